"""The stored format of a dataset: its directory layout, its manifest and how both are checked.

Layout of a dataset directory (all arrays are plain ``.npy`` files, loadable with
``np.load(..., mmap_mode="r")``; nothing is pickled)::

    manifest.json            written last; config, seed, versions, counts, sha256 of every file
    train/clips.npy          uint8 (N, T, H, W, 3)
    train/labels.npy         int64 (N,): index into CLASS_NAMES
    train/positions.npy      float32 (N, T + horizon, 3): world positions, observed frames first
    train/meta.json          sample ids, equations (x, y, z strings in t), generating parameters
    val/...                  the same for the validation split
    test/...                 the same for the held-out test split (when ``test_samples`` > 0)

:mod:`trajlab.data.build` writes it, :mod:`trajlab.data.dataset` loads it; both go through
this module for the versions, the manifest's contents and the checks. Every refusal is a
:class:`DatasetError` saying what is wrong and the command that rebuilds the dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import trajlab
from trajlab.data.render import RenderSettings
from trajlab.errors import ConfigError
from trajlab.profiles import CLASS_NAMES, PROFILE_DIR, DatasetConfig

FORMAT = "trajlab-dataset"
FORMAT_VERSION = 2  # layout of the directory and manifest; 2: the held-out test split
# Bump whenever the generator or renderer would produce other bytes for the same config:
# a cache built by another generator version is refused, not silently reused.
GENERATOR_VERSION = 3  # 2: greyer backgrounds, brighter sphere; 3: transients stay on screen
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")  # every split a dataset may hold; test only with test_samples > 0


class DatasetError(ConfigError):
    """A dataset cache is missing, corrupt, or built with another config or version."""


def split_names(config: DatasetConfig) -> tuple[str, ...]:
    """The splits a dataset of ``config`` holds."""
    return tuple(s for s in SPLITS if s != "test" or config.test_samples > 0)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def config_sha256(config: DatasetConfig) -> str:
    """The sha256 of the config's JSON dump: the manifest's ``config_sha256``."""
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _profile_hint(config: DatasetConfig | None) -> str:
    """Name of the built-in profile whose dataset block equals ``config``, else a placeholder."""
    if config is not None:
        from trajlab.profiles import load_profile

        for p in sorted(PROFILE_DIR.glob("*.yaml")):
            with contextlib.suppress(ConfigError):
                if load_profile(p.stem).dataset == config:
                    return p.stem
    return "<profile>"


def rebuild_hint(out: Path, config: DatasetConfig | None) -> str:
    """The end of every refusal: the command that rebuilds the dataset in ``out``."""
    return f"rebuild it with: trajlab dataset build --profile {_profile_hint(config)} --out {out} --force"


# -- writing -----------------------------------------------------------------------------------


def manifest_document(
    config: DatasetConfig, labels: dict[str, np.ndarray], files: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The manifest of a dataset of ``config``: ``labels`` per split, ``files`` (path -> entry)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "trajlab_version": trajlab.__version__,
        "numpy_version": np.__version__,  # the random streams are numpy's: provenance
        "config": config.model_dump(mode="json"),
        "config_sha256": config_sha256(config),
        "seed": config.seed,
        "classes": list(CLASS_NAMES),
        "counts": {
            s: {
                "total": len(split_labels),
                "per_class": {
                    c: int(n)
                    for c, n in zip(CLASS_NAMES, np.bincount(split_labels, minlength=4), strict=True)
                },
            }
            for s, split_labels in labels.items()
        },
        "camera": {
            "width": config.width,
            "height": config.height,
            "fov_degrees": config.fov_degrees,
            "focal_px": RenderSettings.from_config(config).camera.focal_px,
        },
        "files": files,
    }


# -- reading and checking ----------------------------------------------------------------------


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
        raise DatasetError(f"{p} is unreadable ({exc}); {rebuild_hint(Path(path), None)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DatasetError(f"{p} is not a trajlab dataset manifest; {rebuild_hint(Path(path), None)}")
    return data


def verify_files(path: Path, manifest: dict[str, Any], config: DatasetConfig | None = None) -> None:
    """Check every file's size and sha256 against the manifest (two threads; hashlib frees the GIL)."""
    entries = manifest.get("files", {})
    for rel, entry in entries.items():
        f = path / rel
        if not f.is_file():
            raise DatasetError(
                f"dataset in {path} is incomplete: {rel} is missing; {rebuild_hint(path, config)}"
            )
        if f.stat().st_size != entry.get("bytes"):
            raise DatasetError(
                f"dataset in {path} is corrupt: {rel} has {f.stat().st_size} bytes, the manifest says "
                f"{entry.get('bytes')}; {rebuild_hint(path, config)}"
            )
    # Largest first, so the two threads finish together.
    order = sorted(entries, key=lambda r: -int(entries[r]["bytes"]))
    with ThreadPoolExecutor(max_workers=2) as ex:
        digests = dict(zip(order, ex.map(lambda r: sha256_of(path / r), order), strict=True))
    for rel in order:
        if digests[rel] != entries[rel].get("sha256"):
            raise DatasetError(
                f"dataset in {path} is corrupt: sha256 of {rel} does not match the manifest; "
                f"{rebuild_hint(path, config)}"
            )
