"""Build, cache and load the seeded clip dataset.

Layout of a dataset directory (all arrays are plain ``.npy`` files, loadable with
``np.load(..., mmap_mode="r")``; nothing is pickled)::

    manifest.json            written last; config, seed, versions, counts, sha256 of every file
    train/clips.npy          uint8 (N, T, H, W, 3)
    train/labels.npy         int64 (N,): index into CLASS_NAMES
    train/positions.npy      float32 (N, T + horizon, 3): world positions, observed frames first
    train/meta.json          sample ids, equations (x, y, z strings in t), generating parameters
    val/...                  the same for the validation split
    test/...                 the same for the held-out test split (when ``test_samples`` > 0)

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

Files are written under temporary names and renamed into place, the manifest last.
Data files are not fsync'ed (that would double the build time); a crash can leave a
manifest whose files are incomplete, and loading catches that with the sha256 check.
A lock file serialises concurrent builds into the same directory (several trainers
may start at once): the later ones wait, then reuse the finished cache.
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import trajlab
from trajlab.atomic import atomic_open, atomic_write_text
from trajlab.data.render import RenderSettings, render_batch
from trajlab.data.trajectories import TrajectoryGenerator
from trajlab.errors import ConfigError
from trajlab.profiles import CLASS_NAMES, PROFILE_DIR, DatasetConfig

log = logging.getLogger(__name__)

FORMAT = "trajlab-dataset"
FORMAT_VERSION = 2  # layout of the directory and manifest; 2: the held-out test split
# Bump whenever the generator or renderer would produce other bytes for the same config:
# a cache built by another generator version is refused, not silently reused.
GENERATOR_VERSION = 3  # 2: greyer backgrounds, brighter sphere; 3: transients stay on screen
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")  # every split a dataset may hold; test only with test_samples > 0
_CHUNK = 48  # clips rendered per batch (and per task in the worker pool)
_PARALLEL_MIN_SAMPLES = 96  # below this, a worker pool costs more than it saves


class DatasetError(ConfigError):
    """A dataset cache is missing, corrupt, or built with another config or version."""


# -- the public objects -------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One split of the dataset (``train``, ``val`` or ``test``); arrays in sample order."""

    name: str
    clips: np.ndarray  # uint8 (N, T, H, W, 3), memory-mapped read-only
    labels: np.ndarray  # int64 (N,): index into CLASS_NAMES
    positions: np.ndarray  # float32 (N, T + horizon, 3): world units, observed frames first
    times: np.ndarray  # float32 (T + horizon,): seconds, frame / fps
    extent: np.ndarray  # float32 (N,): max over axes of (max - min) of the positions
    equations: list[tuple[str, str, str]]  # x(t), y(t), z(t), sympy-parsable, t in seconds
    params: list[dict[str, Any]]  # generating parameters
    sample_ids: np.ndarray = field(repr=False)  # int64 (N,): global sample index (seeds its generator)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def frames(self) -> int:
        """Observed frames per clip (T)."""
        return int(self.clips.shape[1])

    @property
    def observed(self) -> np.ndarray:
        """Positions on the observed frames: (N, T, 3)."""
        return self.positions[:, : self.frames]

    @property
    def future(self) -> np.ndarray:
        """Positions on the frames to forecast: (N, horizon, 3)."""
        return self.positions[:, self.frames :]

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(CLASS_NAMES))
        return {name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)}


@dataclass(frozen=True)
class Dataset:
    """A loaded, verified dataset."""

    path: Path
    config: DatasetConfig
    train: Split
    val: Split
    manifest: dict[str, Any] = field(repr=False)
    manifest_sha256: str = ""  # sha256 of manifest.json: identifies this exact dataset
    test: Split | None = None  # the held-out test split; None when built with test_samples 0

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this dataset holds, in SPLITS order."""
        return tuple(s for s in SPLITS if s != "test" or self.test is not None)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        if name == "test":
            if self.test is None:
                raise DatasetError(
                    f"dataset in {self.path} has no test split (dataset.test_samples is 0); "
                    "set test_samples in the profile's dataset block and rebuild"
                )
            return self.test
        return self.train if name == "train" else self.val


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


def split_names(config: DatasetConfig) -> tuple[str, ...]:
    """The splits a dataset of ``config`` holds."""
    return tuple(s for s in SPLITS if s != "test" or config.test_samples > 0)


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
    gen = TrajectoryGenerator.from_config(config)
    settings = RenderSettings.from_config(config)
    rngs = [_sample_rng(config.seed, i) for i in ids]
    trajs = [gen.sample(int(i) % len(CLASS_NAMES), rng) for i, rng in zip(ids, rngs, strict=True)]
    pos = np.stack([t.positions for t in trajs])
    # The same generator continues into the scene: trajectory first, then render draws.
    render_batch(pos[:, : config.frames], settings, rngs, clips[start : start + len(ids)])
    return _ChunkResult(split, start, pos, [t.equations for t in trajs], [t.params for t in trajs])


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


# -- files -----------------------------------------------------------------------------------


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb", fsync=False) as fh:
        np.save(fh, arr, allow_pickle=False)


def _save_json(path: Path, obj: Any, indent: int | None = None) -> None:
    text = json.dumps(obj, sort_keys=True, indent=indent, separators=None if indent else (",", ":"))
    atomic_write_text(path, text + "\n", fsync=False)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _config_sha(config: DatasetConfig) -> str:
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    with open(out / ".build.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _profile_hint(config: DatasetConfig | None) -> str:
    """Name of the built-in profile whose dataset block equals ``config``, else a placeholder."""
    if config is not None:
        from trajlab.profiles import load_profile

        for p in sorted(PROFILE_DIR.glob("*.yaml")):
            with contextlib.suppress(ConfigError):
                if load_profile(p.stem).dataset == config:
                    return p.stem
    return "<profile>"


def _rebuild_hint(out: Path, config: DatasetConfig | None) -> str:
    return f"rebuild it with: trajlab dataset build --profile {_profile_hint(config)} --out {out} --force"


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
    plan = _plan(config)
    n_workers = workers if workers is not None else _default_workers(config)
    # Forking a process that runs other threads (a gRPC server, say) is unsafe: render in-process then.
    if n_workers > 1 and threading.active_count() > 1:
        log.info("other threads are running: rendering in-process instead of %d workers", n_workers)
        n_workers = 1
    T, H, W = config.frames, config.height, config.width
    n_pos = config.frames + config.horizon
    # Temp files a crashed build left behind (we hold the lock: nobody else is writing).
    splits = split_names(config)
    for stale in [*out.glob(".*.tmp-*"), *(f for s in SPLITS for f in (out / s).glob(".*.tmp-*"))]:
        stale.unlink(missing_ok=True)

    clip_tmp: dict[str, Path] = {}
    clips: dict[str, np.ndarray] = {}
    hashers: dict[str, Any] = {}
    for split in splits:
        (out / split).mkdir(exist_ok=True)
        clip_tmp[split] = _tmp(out / split / "clips.npy")
        n = len(plan.ids[split])
        clips[split] = np.lib.format.open_memmap(
            clip_tmp[split], mode="w+", dtype=np.uint8, shape=(n, T, H, W, 3)
        )
        hashers[split] = hashlib.sha256()
        with open(clip_tmp[split], "rb") as fh:
            hashers[split].update(fh.read(clips[split].offset))  # the .npy header
    positions = {s: np.empty((len(plan.ids[s]), n_pos, 3), dtype=np.float64) for s in splits}
    equations: dict[str, list[Any]] = {s: [None] * len(plan.ids[s]) for s in splits}
    params: dict[str, list[Any]] = {s: [None] * len(plan.ids[s]) for s in splits}

    tasks = [
        (split, start, plan.ids[split][start : start + _CHUNK])
        for split in splits
        for start in range(0, len(plan.ids[split]), _CHUNK)
    ]
    total = sum(len(plan.ids[s]) for s in splits)
    done = 0
    hashed = {s: 0 for s in splits}
    pending: dict[str, dict[int, int]] = {s: {} for s in splits}

    def absorb(res: _ChunkResult) -> None:
        nonlocal done
        n = len(res.equations)
        positions[res.split][res.start : res.start + n] = res.positions
        equations[res.split][res.start : res.start + n] = res.equations
        params[res.split][res.start : res.start + n] = res.params
        # Hash the clips file as chunks arrive in order, overlapping hashing with rendering.
        pending[res.split][res.start] = n
        while hashed[res.split] in pending[res.split]:
            s0 = hashed[res.split]
            n0 = pending[res.split].pop(s0)
            hashers[res.split].update(memoryview(clips[res.split][s0 : s0 + n0]).cast("B"))
            hashed[res.split] = s0 + n0
        done += n
        if on_progress is not None:
            on_progress(done, total)
        if bar is not None:
            bar.update(task_id, completed=done)

    bar = None
    task_id = None
    with contextlib.ExitStack() as stack:
        pool = None
        if n_workers > 1:
            # Fork before the progress bar starts its refresh thread.
            ctx = multiprocessing.get_context("fork")
            init = (config, {s: str(p) for s, p in clip_tmp.items()})
            pool = stack.enter_context(ctx.Pool(n_workers, initializer=_worker_init, initargs=init))
        if progress:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            bar = stack.enter_context(
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=Console(stderr=True),  # stdout stays for results
                    transient=True,
                )
            )
            task_id = bar.add_task("rendering clips", total=total)
        if pool is None:
            for split, start, ids in tasks:
                absorb(_render_chunk(config, clips[split], split, start, ids))
        else:
            for res in pool.imap(_worker_task, tasks):
                absorb(res)

    files: dict[str, dict[str, Any]] = {}
    for split in splits:
        shape = list(clips[split].shape)
        del clips[split]
        rel = f"{split}/clips.npy"
        os.replace(clip_tmp[split], out / rel)
        files[rel] = {"sha256": hashers[split].hexdigest(), "shape": shape, "dtype": "uint8"}
        small = {
            "labels.npy": plan.labels(split),
            "positions.npy": positions[split].astype(np.float32),
        }
        for name, arr in small.items():
            _save_npy(out / split / name, arr)
            files[f"{split}/{name}"] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        meta = {
            "sample_ids": plan.ids[split].tolist(),
            "equations": [list(e) for e in equations[split]],
            "params": params[split],
        }
        _save_json(out / split / "meta.json", meta)
        files[f"{split}/meta.json"] = {}
    for rel, entry in files.items():
        entry["bytes"] = (out / rel).stat().st_size
        if "sha256" not in entry:
            entry["sha256"] = sha256_of(out / rel)

    counts = {s: len(plan.ids[s]) for s in splits}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "trajlab_version": trajlab.__version__,
        "numpy_version": np.__version__,  # the random streams are numpy's: provenance
        "config": config.model_dump(mode="json"),
        "config_sha256": _config_sha(config),
        "seed": config.seed,
        "classes": list(CLASS_NAMES),
        "counts": {
            s: {
                "total": counts[s],
                "per_class": {
                    c: int(n)
                    for c, n in zip(CLASS_NAMES, np.bincount(plan.labels(s), minlength=4), strict=True)
                },
            }
            for s in splits
        },
        "camera": {
            "width": config.width,
            "height": config.height,
            "fov_degrees": config.fov_degrees,
            "focal_px": RenderSettings.from_config(config).camera.focal_px,
        },
        "files": files,
    }
    _save_json(out / MANIFEST, manifest, indent=1)
    return counts


# -- load ------------------------------------------------------------------------------------


def _config_diff(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    keys = sorted(set(have) | set(want))
    return [
        f"{k}: cache has {have.get(k, '<missing>')!r}, expected {want.get(k, '<missing>')!r}"
        for k in keys
        if have.get(k) != want.get(k)
    ]


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the dataset in ``path`` (not verified)."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        raise DatasetError(
            f"no dataset in {Path(path)} (no {MANIFEST}); build one with: "
            f"trajlab dataset build --profile <profile> --out {Path(path)}"
        )
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{p} is unreadable ({exc}); {_rebuild_hint(Path(path), None)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DatasetError(f"{p} is not a trajlab dataset manifest; {_rebuild_hint(Path(path), None)}")
    return data


def verify_files(path: Path, manifest: dict[str, Any], config: DatasetConfig | None = None) -> None:
    """Check every file's size and sha256 against the manifest (two threads; hashlib frees the GIL)."""
    entries = manifest.get("files", {})
    for rel, entry in entries.items():
        f = path / rel
        if not f.is_file():
            raise DatasetError(
                f"dataset in {path} is incomplete: {rel} is missing; {_rebuild_hint(path, config)}"
            )
        if f.stat().st_size != entry.get("bytes"):
            raise DatasetError(
                f"dataset in {path} is corrupt: {rel} has {f.stat().st_size} bytes, the manifest says "
                f"{entry.get('bytes')}; {_rebuild_hint(path, config)}"
            )
    # Largest first, so the two threads finish together.
    order = sorted(entries, key=lambda r: -int(entries[r]["bytes"]))
    with ThreadPoolExecutor(max_workers=2) as ex:
        digests = dict(zip(order, ex.map(lambda r: sha256_of(path / r), order), strict=True))
    for rel in order:
        if digests[rel] != entries[rel].get("sha256"):
            raise DatasetError(
                f"dataset in {path} is corrupt: sha256 of {rel} does not match the manifest; "
                f"{_rebuild_hint(path, config)}"
            )


def load_dataset(
    path: str | Path, expected_config: DatasetConfig | None = None, *, verify: bool = True
) -> Dataset:
    """Load and verify the dataset in ``path``.

    Raises :class:`DatasetError` (a ConfigError) saying what is wrong and how to rebuild when
    the manifest is missing, the format or generator version differs, the config differs
    from ``expected_config`` (every differing field is named), or any file's sha256 does
    not match. ``verify=False`` skips the sha256 pass (sizes are still checked by np.load).
    """
    p = Path(path)
    manifest = read_manifest(p)
    config_data = manifest.get("config", {})
    try:
        config = DatasetConfig.model_validate(config_data)
    except ValueError:
        raise DatasetError(
            f"dataset in {p} was built with a config this version cannot read; "
            f"{_rebuild_hint(p, expected_config)}"
        ) from None
    if (
        manifest.get("format_version") != FORMAT_VERSION
        or manifest.get("generator_version") != GENERATOR_VERSION
    ):
        raise DatasetError(
            f"dataset in {p} was built by another version of the generator (format "
            f"{manifest.get('format_version')}, generator {manifest.get('generator_version')}; this is "
            f"format {FORMAT_VERSION}, generator {GENERATOR_VERSION}); "
            f"{_rebuild_hint(p, expected_config or config)}"
        )
    if expected_config is not None and expected_config != config:
        diff = _config_diff(config.model_dump(mode="json"), expected_config.model_dump(mode="json"))
        raise DatasetError(
            f"dataset in {p} was built with another config ({'; '.join(diff)}); "
            f"{_rebuild_hint(p, expected_config)}"
        )
    if verify:
        verify_files(p, manifest, config)
    manifest_sha = sha256_of(p / MANIFEST)
    times = (np.arange(config.frames + config.horizon, dtype=np.float64) / config.fps).astype(np.float32)
    splits = {}
    for s in split_names(config):
        try:
            splits[s] = _load_split(p / s, s, times)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Only reachable with verify=False (a verified cache has exactly the files it wrote).
            raise DatasetError(
                f"dataset in {p} is unreadable ({s}: {exc}); {_rebuild_hint(p, expected_config or config)}"
            ) from None
    return Dataset(
        path=p,
        config=config,
        train=splits["train"],
        val=splits["val"],
        manifest=manifest,
        manifest_sha256=manifest_sha,
        test=splits.get("test"),
    )


def _load_split(d: Path, name: str, times: np.ndarray) -> Split:
    meta = json.loads((d / "meta.json").read_text())
    positions = np.load(d / "positions.npy", allow_pickle=False)
    labels = np.load(d / "labels.npy", allow_pickle=False)
    clips = np.load(d / "clips.npy", mmap_mode="r", allow_pickle=False)
    if not len(clips) == len(labels) == len(positions) == len(meta["equations"]):
        raise ValueError("clips, labels, positions and equations differ in length")
    extent = np.ptp(positions.astype(np.float64), axis=1).max(axis=1).astype(np.float32)
    return Split(
        name=name,
        clips=clips,
        labels=labels,
        positions=positions,
        times=times,
        extent=extent,
        equations=[tuple(e) for e in meta["equations"]],  # type: ignore[misc]
        params=meta["params"],
        sample_ids=np.asarray(meta["sample_ids"], dtype=np.int64),
    )


def dataset_summary(ds: Dataset) -> dict[str, Any]:
    """Counts per split and class, for ``trajlab dataset show`` and logs."""
    return {s: ds.split(s).class_counts() for s in ds.splits}
