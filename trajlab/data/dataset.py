"""A stored dataset, loaded and verified: :class:`Dataset` and its :class:`Split` s.

:func:`load_dataset` reads a directory that :mod:`trajlab.data.build` wrote (its layout and
manifest: :mod:`trajlab.data.manifest`) and refuses, with the command that rebuilds it, a
missing or corrupt cache, or one built by another version or with another config. The clips
stay memory-mapped; the other arrays are read whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajlab.data.manifest import (
    FORMAT_VERSION,
    GENERATOR_VERSION,
    MANIFEST,
    SPLITS,
    DatasetError,
    read_manifest,
    rebuild_hint,
    sha256_of,
    split_names,
    verify_files,
)
from trajlab.profiles import CLASS_NAMES, DatasetConfig

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


# -- load ------------------------------------------------------------------------------------


def _config_diff(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    keys = sorted(set(have) | set(want))
    return [
        f"{k}: cache has {have.get(k, '<missing>')!r}, expected {want.get(k, '<missing>')!r}"
        for k in keys
        if have.get(k) != want.get(k)
    ]


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
            f"{rebuild_hint(p, expected_config)}"
        ) from None
    if (
        manifest.get("format_version") != FORMAT_VERSION
        or manifest.get("generator_version") != GENERATOR_VERSION
    ):
        raise DatasetError(
            f"dataset in {p} was built by another version of the generator (format "
            f"{manifest.get('format_version')}, generator {manifest.get('generator_version')}; this is "
            f"format {FORMAT_VERSION}, generator {GENERATOR_VERSION}); "
            f"{rebuild_hint(p, expected_config or config)}"
        )
    if expected_config is not None and expected_config != config:
        diff = _config_diff(config.model_dump(mode="json"), expected_config.model_dump(mode="json"))
        raise DatasetError(
            f"dataset in {p} was built with another config ({'; '.join(diff)}); "
            f"{rebuild_hint(p, expected_config)}"
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
                f"dataset in {p} is unreadable ({s}: {exc}); {rebuild_hint(p, expected_config or config)}"
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
