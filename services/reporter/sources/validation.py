"""The clips the served models are scored on: the dataset's held-out test split (or val), from its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.reporter.model import ValidationSet
from trajlab.profiles import CLASS_NAMES


def load_validation(data_dir: Path, split: str = "val") -> ValidationSet:
    """Load ``split`` (``test`` for the report's headline, or ``val``) of the dataset cached in ``data_dir``.

    Raises FileNotFoundError when there is no dataset there, and the dataset's error when it
    has no such split (the report then shows the served-model evaluation as missing with that
    reason). The reporter never builds a dataset itself: it scores the dataset the trainers
    used, or nothing.
    """
    from trajlab.data import load_dataset  # the dataset library; imported late (heavy, optional)

    if not Path(data_dir).exists():
        raise FileNotFoundError(f"no dataset at {data_dir}")
    ds = load_dataset(data_dir)
    val = ds.split(split)
    return ValidationSet(
        clips=np.asarray(val.clips),
        labels=np.asarray(val.labels, dtype=np.int64),
        positions=np.asarray(val.positions, dtype=np.float32),
        times=np.asarray(val.times, dtype=np.float32),
        extent=np.asarray(val.extent, dtype=np.float32),
        fps=float(ds.config.fps),
        class_names=tuple(CLASS_NAMES),
        manifest_sha256=str(getattr(ds, "manifest_sha256", "")),
        equations=[tuple(e) for e in getattr(val, "equations", [])],  # type: ignore[misc]
        params=list(getattr(val, "params", []) or []),
        source=str(data_dir),
        split=split,
    )
