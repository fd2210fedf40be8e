"""Build (or reuse) the seeded clip dataset of a config: which sample goes where, rendering, writing.

Determinism: sample ``i`` (0 <= i < samples) has class ``i % 4`` and draws every
random number (trajectory, then scene) from its own generator,
``SeedSequence(seed, spawn_key=(0, i))``; the split and the order inside each split
come from ``SeedSequence(seed, spawn_key=(1,))``. So the bytes depend on the config
only, never on how many worker processes rendered them. Classes are balanced (counts
differ by at most one) and the split is stratified: each class puts
``round(count * val_fraction)`` of its samples into validation.

The held-out test split is ``test_samples`` further samples, ids ``samples .. samples +
test_samples - 1`` (plus ``test_id_offset``, 0 but in stress sets; class ``i % 4`` again,
so balanced), drawn from the same master seed but their own generators: disjoint from train
and val, and train/val bytes do not depend on it. Nothing in training, early stopping or the
choice of settings reads it; the reporter's headline figures do.

Files (layout and manifest: :mod:`trajlab.data.manifest`) are written under temporary names
and renamed into place, the manifest last. Data files are not fsync'ed (that would double the
build time); a crash can leave a manifest whose files are incomplete, and loading catches that
with the sha256 check. A lock file serialises concurrent builds into the same directory
(several trainers may start at once): the later ones wait, then reuse the finished cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajlab.atomic import atomic_open, atomic_write_text
from trajlab.data.dataset import load_dataset
from trajlab.data.manifest import MANIFEST, SPLITS, manifest_document, sha256_of, split_names
from trajlab.data.render import RenderSettings, render_batch
from trajlab.data.trajectories import TrajectoryGenerator
from trajlab.errors import ConfigError
from trajlab.profiles import CLASS_NAMES, DatasetConfig

log = logging.getLogger(__name__)

_CHUNK = 48  # clips rendered per batch (and per task in the worker pool)
_PARALLEL_MIN_SAMPLES = 96  # below this, a worker pool costs more than it saves


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_dataset_detailed` did."""

    path: Path
    reused: bool  # True: a matching, verified cache was already there
    seconds: float  # wall time of the call
    clips: int
    counts: dict[str, int]  # clips per split


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Which sample goes where: per split, the global sample ids in file order."""

    ids: dict[str, np.ndarray]  # split -> int64 sample ids

    def labels(self, split: str) -> np.ndarray:
        return (self.ids[split] % len(CLASS_NAMES)).astype(np.int64)


def _plan(config: DatasetConfig) -> _Plan:
    n = config.samples
    n_classes = len(CLASS_NAMES)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1,)))
    train, val = [], []
    for c in range(n_classes):
        ids = np.arange(c, n, n_classes)  # sample i has class i % 4: balanced to within one
        ids = rng.permutation(ids)
        n_val = round(len(ids) * config.val_fraction)
        val.append(ids[:n_val])
        train.append(ids[n_val:])
    out = {"train": rng.permutation(np.concatenate(train)), "val": rng.permutation(np.concatenate(val))}
    if config.test_samples > 0:
        # Ids after every train/val id: their own generators, so the split is disjoint from both.
        first = n + config.test_id_offset  # a stress set shifts them onto its profile's test ids
        out["test"] = np.arange(first, first + config.test_samples)
    return _Plan({k: v.astype(np.int64) for k, v in out.items()})


def _sample_rng(seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, int(i))))


# -- rendering (in-process or in forked workers) ------------------------------------------------


@dataclass
class _ChunkResult:
    split: str
    start: int
    positions: np.ndarray  # float64 (n, T + horizon, 3)
    equations: list[tuple[str, str, str]]
    params: list[dict[str, Any]]


def _render_chunk(
    config: DatasetConfig, clips: np.ndarray, split: str, start: int, ids: np.ndarray
) -> _ChunkResult:
    """Generate and render samples ``ids`` into ``clips[start : start + len(ids)]``."""
    rngs = [_sample_rng(config.seed, i) for i in ids]
    labels = [int(i) % len(CLASS_NAMES) for i in ids]
    trajs = render_samples(config, labels, rngs, clips[start : start + len(ids)])
    pos = np.stack([t.positions for t in trajs])
    return _ChunkResult(split, start, pos, [t.equations for t in trajs], [t.params for t in trajs])


def render_samples(
    config: DatasetConfig, labels: Sequence[int], rngs: Sequence[np.random.Generator], out: np.ndarray
) -> list[Any]:
    """One clip per (label, rng) into ``out`` (len(labels), T, H, W, 3); their trajectories.

    Each sample's generator draws its trajectory first and then continues into the scene, so
    the bytes follow from (config, rng) alone: the dataset's samples and the trainer's fresh
    clips are made the same way.
    """
    gen = TrajectoryGenerator.from_config(config)
    settings = RenderSettings.from_config(config)
    trajs = [gen.sample(int(c), rng) for c, rng in zip(labels, rngs, strict=True)]
    pos = np.stack([t.positions for t in trajs])
    render_batch(pos[:, : config.frames], settings, list(rngs), out)
    return trajs


_WORKER: dict[str, Any] = {}


def _worker_init(config: DatasetConfig, clip_paths: dict[str, str]) -> None:
    _WORKER["config"] = config
    _WORKER["clips"] = {s: np.load(p, mmap_mode="r+") for s, p in clip_paths.items()}


def _worker_task(task: tuple[str, int, np.ndarray]) -> _ChunkResult:
    split, start, ids = task
    # No msync: the parent maps the same file (MAP_SHARED) and sees the pages at once.
    return _render_chunk(_WORKER["config"], _WORKER["clips"][split], split, start, ids)


def _default_workers(config: DatasetConfig) -> int:
    if config.samples < _PARALLEL_MIN_SAMPLES:
        return 1
    env = os.environ.get("TRAJLAB_DATASET_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"TRAJLAB_DATASET_WORKERS must be an integer, got {env!r}") from None
    return max(1, min(2, len(os.sched_getaffinity(0))))


def _worker_count(config: DatasetConfig, workers: int | None) -> int:
    n_workers = workers if workers is not None else _default_workers(config)
    # Forking a process that runs other threads (a gRPC server, say) is unsafe: render in-process then.
    if n_workers > 1 and threading.active_count() > 1:
        log.info("other threads are running: rendering in-process instead of %d workers", n_workers)
        n_workers = 1
    return n_workers


# -- files -----------------------------------------------------------------------------------


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb", fsync=False) as fh:
        np.save(fh, arr, allow_pickle=False)


def _save_json(path: Path, obj: Any, indent: int | None = None) -> None:
    text = json.dumps(obj, sort_keys=True, indent=indent, separators=None if indent else (",", ":"))
    atomic_write_text(path, text + "\n", fsync=False)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    with open(out / ".build.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class _SplitOutput:
    """One split being built: its clips file (a memory map under a temporary name, hashed as the
    chunks arrive in order, so hashing overlaps rendering) and its per-sample arrays."""

    tmp: Path
    clips: np.ndarray  # uint8 (n, T, H, W, 3), memory-mapped
    hasher: Any  # sha256 of the clips file so far
    positions: np.ndarray  # float64 (n, T + horizon, 3)
    equations: list[Any]
    params: list[Any]
    hashed: int = 0  # clips [0, hashed) are in the hash
    pending: dict[int, int] = field(default_factory=dict)  # rendered chunks not hashed yet: start -> n

    @classmethod
    def open(cls, out: Path, split: str, n: int, config: DatasetConfig) -> _SplitOutput:
        (out / split).mkdir(exist_ok=True)
        tmp = _tmp(out / split / "clips.npy")
        shape = (n, config.frames, config.height, config.width, 3)
        clips = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        hasher = hashlib.sha256()
        with open(tmp, "rb") as fh:
            hasher.update(fh.read(clips.offset))  # the .npy header
        positions = np.empty((n, config.frames + config.horizon, 3), dtype=np.float64)
        return cls(tmp, clips, hasher, positions, [None] * n, [None] * n)

    def absorb(self, res: _ChunkResult) -> None:
        """Take a rendered chunk's arrays; hash every chunk that is now next in order."""
        n = len(res.equations)
        self.positions[res.start : res.start + n] = res.positions
        self.equations[res.start : res.start + n] = res.equations
        self.params[res.start : res.start + n] = res.params
        self.pending[res.start] = n
        while self.hashed in self.pending:
            s0 = self.hashed
            n0 = self.pending.pop(s0)
            self.hasher.update(memoryview(self.clips[s0 : s0 + n0]).cast("B"))
            self.hashed = s0 + n0

    def write(self, out: Path, split: str, plan: _Plan) -> dict[str, dict[str, Any]]:
        """Rename the clips into place and write the other files; their manifest entries (no
        sizes yet, sha256 only of the clips)."""
        shape = list(self.clips.shape)
        del self.clips  # drop the memory map before the rename
        rel = f"{split}/clips.npy"
        os.replace(self.tmp, out / rel)
        files: dict[str, dict[str, Any]] = {
            rel: {"sha256": self.hasher.hexdigest(), "shape": shape, "dtype": "uint8"}
        }
        small = {
            "labels.npy": plan.labels(split),
            "positions.npy": self.positions.astype(np.float32),
        }
        for name, arr in small.items():
            _save_npy(out / split / name, arr)
            files[f"{split}/{name}"] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        meta = {
            "sample_ids": plan.ids[split].tolist(),
            "equations": [list(e) for e in self.equations],
            "params": self.params,
        }
        _save_json(out / split / "meta.json", meta)
        files[f"{split}/meta.json"] = {}
        return files


# -- build -----------------------------------------------------------------------------------


def build_dataset(
    config: DatasetConfig,
    out_dir: str | Path,
    progress: bool = False,
    *,
    force: bool = False,
    workers: int | None = None,
) -> Path:
    """Build the dataset of ``config`` into ``out_dir`` (or reuse a matching cache); return its path.

    A directory holding a verified dataset of the same config is reused as it is. One
    holding a dataset of another config or a corrupt one is refused with a
    :class:`DatasetError`. ``force`` rebuilds in place whatever the directory holds.
    """
    return build_dataset_detailed(config, out_dir, progress, force=force, workers=workers).path


def build_dataset_detailed(
    config: DatasetConfig,
    out_dir: str | Path,
    progress: bool = False,
    *,
    force: bool = False,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """:func:`build_dataset` that also says whether it reused the cache and how long it took.

    ``on_progress(done, total)`` is called after each rendered chunk (clips).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        if (out / MANIFEST).exists():
            if force:
                log.warning("rebuilding the dataset in %s (force)", out)
            else:
                ds = load_dataset(out, expected_config=config)  # raises if corrupt or another config
                log.info("reusing the dataset cache in %s", out)
                counts = {s: len(ds.split(s)) for s in ds.splits}
                return BuildResult(out, True, time.perf_counter() - t0, sum(counts.values()), counts)
            (out / MANIFEST).unlink()  # from here on the directory is not a valid dataset
        counts = _build(config, out, progress, workers, on_progress)
    seconds = time.perf_counter() - t0
    log.info("built %d clips in %.2f s into %s", sum(counts.values()), seconds, out)
    return BuildResult(out, False, seconds, sum(counts.values()), counts)


def _build(
    config: DatasetConfig,
    out: Path,
    progress: bool,
    workers: int | None,
    on_progress: Callable[[int, int], None] | None,
) -> dict[str, int]:
    """Render every split of ``config`` into ``out`` (locked by the caller), the manifest last."""
    plan = _plan(config)
    n_workers = _worker_count(config, workers)
    # Temp files a crashed build left behind (we hold the lock: nobody else is writing).
    splits = split_names(config)
    for stale in [*out.glob(".*.tmp-*"), *(f for s in SPLITS for f in (out / s).glob(".*.tmp-*"))]:
        stale.unlink(missing_ok=True)
    outputs = {s: _SplitOutput.open(out, s, len(plan.ids[s]), config) for s in splits}
    tasks = [
        (split, start, plan.ids[split][start : start + _CHUNK])
        for split in splits
        for start in range(0, len(plan.ids[split]), _CHUNK)
    ]
    _render(config, outputs, tasks, n_workers, progress, on_progress)

    files: dict[str, dict[str, Any]] = {}
    for split in splits:
        files.update(outputs[split].write(out, split, plan))
    for rel, entry in files.items():
        entry["bytes"] = (out / rel).stat().st_size
        if "sha256" not in entry:
            entry["sha256"] = sha256_of(out / rel)
    manifest = manifest_document(config, {s: plan.labels(s) for s in splits}, files)
    _save_json(out / MANIFEST, manifest, indent=1)
    return {s: len(plan.ids[s]) for s in splits}


def _render(
    config: DatasetConfig,
    outputs: dict[str, _SplitOutput],
    tasks: list[tuple[str, int, np.ndarray]],
    n_workers: int,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """Render every task's chunk (in-process or in ``n_workers`` forked workers) into its split."""
    total = sum(len(ids) for _, _, ids in tasks)
    done = 0
    with contextlib.ExitStack() as stack:
        results: Iterable[_ChunkResult]
        if n_workers > 1:
            # Fork before the progress bar starts its refresh thread.
            ctx = multiprocessing.get_context("fork")
            init = (config, {s: str(o.tmp) for s, o in outputs.items()})
            pool = stack.enter_context(ctx.Pool(n_workers, initializer=_worker_init, initargs=init))
            results = pool.imap(_worker_task, tasks)
        else:
            results = (_render_chunk(config, outputs[s].clips, s, start, ids) for s, start, ids in tasks)
        show = _progress_bar(stack, total) if progress else None
        for res in results:
            outputs[res.split].absorb(res)
            done += len(res.equations)
            if on_progress is not None:
                on_progress(done, total)
            if show is not None:
                show(done)


def _progress_bar(stack: contextlib.ExitStack, total: int) -> Callable[[int], None]:
    """A transient progress bar on stderr (stdout stays for results), closed with ``stack``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = stack.enter_context(
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    )
    task_id = bar.add_task("rendering clips", total=total)
    return lambda done: bar.update(task_id, completed=done)
