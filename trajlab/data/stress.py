"""Stress sets: the profile's dataset with ONE factor changed, to see what a model's score rests on.

Each set is a dataset config derived from the profile's (:func:`stress_config`) whose
held-out test split is the stress clips; it is built, seeded and cached like any dataset
(manifest, sha256 of every file) in its own folder beside the profile's cache
(:func:`stress_dir`: ``data/quick`` -> ``data/quick-stress/<name>``).

The set keeps the profile's ``seed`` and shifts its test ids (``test_id_offset``) onto the
profile's test split's, so its test clips have the same sample ids and random streams. Where
the changed factor only touches the scene (clutter, transients, noise: the renderer draws its
tables at their largest size), stress clip ``j`` shows the very trajectory of test clip ``j``
in a harder scene, and the drop from the test split can be measured clip by clip (paired).
Camera shake widens the margin the trajectories keep from the border, the unseen seed and the
beyond-range motions draw other trajectories: those sets are compared with the test split as
independent samples. The dataset's train/val part is the smallest a dataset may hold (8
clips), never used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajlab.errors import ConfigError
from trajlab.profiles import DatasetConfig

DEFAULT_STRESS_SAMPLES = 160  # clips per stress set (capped at the profile's test_samples)
UNSEEN_SEED_OFFSET = 1000  # the unseen seed is the profile's seed + this (never trained or tested on)
STRESS_TRAIN_VAL = 8  # train/val clips a stress set's dataset holds (the fewest a dataset may; unused)
BEYOND_RANGE_SCALE = 1.5  # motion_range_scale of the beyond-range set: sizes in [hi, 1.5 hi]


@dataclass(frozen=True)
class StressSet:
    """One named stress set: what it changes, and how (a function of the profile's config)."""

    name: str
    description: str
    field: str  # the one DatasetConfig field it changes
    change: Callable[[DatasetConfig], Any]  # the field's new value, from the profile's config


def _double_noise(c: DatasetConfig) -> float:
    # Twice the profile's noise; a profile without noise gets the default's 8 grey levels.
    return min(64.0, 2.0 * c.background_noise) if c.background_noise > 0 else 8.0


STRESS_SETS: dict[str, StressSet] = {
    s.name: s
    for s in (
        StressSet(
            "clutter", "three more static clutter objects", "clutter", lambda c: min(16, c.clutter + 3)
        ),
        StressSet(
            "transients", "two more transient objects", "transients", lambda c: min(8, c.transients + 2)
        ),
        StressSet("noise", "twice the background noise", "background_noise", _double_noise),
        StressSet(
            "shake",
            "camera shake: 1 pixel more of per-frame jitter (std)",
            "camera_jitter",
            lambda c: min(4.0, c.camera_jitter + 1.0),
        ),
        StressSet(
            "unseen_seed",
            f"an unseen random seed (the profile's + {UNSEEN_SEED_OFFSET})",
            "seed",
            lambda c: c.seed + UNSEEN_SEED_OFFSET,
        ),
        StressSet(
            "beyond_range",
            f"motions beyond the training ranges: sizes and speeds in [hi, {BEYOND_RANGE_SCALE:g} hi] "
            "(faster turns, larger radii, steeper arcs)",
            "motion_range_scale",
            lambda c: BEYOND_RANGE_SCALE,
        ),
    )
}


def parse_sets(spec: str | None, what: str = "--sets") -> list[str]:
    """``"clutter,noise"`` (or None / "" / "all" for every set) -> the set names, in STRESS_SETS order.

    Raises ConfigError naming ``what`` (the option or setting the spec came from), the unknown
    set and the known ones.
    """
    if spec is None or spec.strip() in ("", "all"):
        return list(STRESS_SETS)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRESS_SETS]
    if unknown:
        bad = ", ".join(repr(n) for n in unknown)
        raise ConfigError(f"{what}: unknown stress set {bad}; known: {', '.join(STRESS_SETS)}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{what}: stress set {', '.join(dup)} given twice")
    return [n for n in STRESS_SETS if n in names]


def stress_samples(dataset_cfg: DatasetConfig, samples: int = DEFAULT_STRESS_SAMPLES) -> int:
    """Clips per stress set: ``samples``, at most the profile's test split (so every clip has a twin)."""
    if samples < 1:
        raise ConfigError(f"stress samples must be >= 1, got {samples}")
    return min(samples, dataset_cfg.test_samples) if dataset_cfg.test_samples > 0 else samples


def stress_config(
    dataset_cfg: DatasetConfig, name: str, samples: int = DEFAULT_STRESS_SAMPLES
) -> DatasetConfig:
    """The dataset config of stress set ``name``: the profile's with one factor changed.

    Its test split (``samples`` clips, see :func:`stress_samples`) is the stress set.
    """
    if name not in STRESS_SETS:
        raise ConfigError(f"unknown stress set {name!r}; known: {', '.join(STRESS_SETS)}")
    s = STRESS_SETS[name]
    values = dataset_cfg.model_dump()
    values[s.field] = s.change(dataset_cfg)
    values["test_samples"] = stress_samples(dataset_cfg, samples)
    # Few train/val clips (never used), and the test ids shifted onto the profile's test split's.
    values["samples"] = STRESS_TRAIN_VAL
    values["test_id_offset"] = dataset_cfg.samples + dataset_cfg.test_id_offset - STRESS_TRAIN_VAL
    return DatasetConfig.model_validate(values)


def stress_dir(data_dir: str | Path, name: str, root: str | Path | None = None) -> Path:
    """Where stress set ``name`` of the dataset cached in ``data_dir`` is cached: ``root/name``,
    or beside the dataset when ``root`` is None (a read-only dataset needs a ``root``)."""
    if root is not None:
        return Path(root) / name
    d = Path(data_dir)
    return d.parent / f"{d.name}-stress" / name


def build_stress_set(
    dataset_cfg: DatasetConfig,
    name: str,
    data_dir: str | Path,
    *,
    samples: int = DEFAULT_STRESS_SAMPLES,
    force: bool = False,
    workers: int | None = None,
    root: str | Path | None = None,
) -> Any:
    """Build (or reuse the verified cache of) stress set ``name`` (in :func:`stress_dir`); returns
    the dataset BuildResult."""
    from trajlab.data.build import build_dataset_detailed

    cfg = stress_config(dataset_cfg, name, samples)
    return build_dataset_detailed(cfg, stress_dir(data_dir, name, root), force=force, workers=workers)
