"""Datasets in a store: ``<url>/dataset-<config sha256[:16]>/`` is one unit, cached locally.

``prepare_dataset`` is what a trainer (or the reporter) calls instead of ``build_dataset``
when its data location may be a bucket: a complete unit of the same config is fetched
(verified against its marker) into the local cache; if the bucket has none, the dataset
is built locally (seeded, so every builder makes the same bytes) and published as a
unit for the next reader. A local path behaves exactly as ``build_dataset``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from trajlab.data import build_dataset
from trajlab.profiles import DatasetConfig
from trajlab.store.location import is_store_url, open_store
from trajlab.store.units import complete_units, fetch_unit, publish_unit, read_marker, sha256_of

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def dataset_unit(config: DatasetConfig) -> str:
    digest = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    return f"dataset-{digest[:16]}"


def _dataset_files(local: Path) -> dict[str, Path]:
    return {
        p.relative_to(local).as_posix(): p
        for p in sorted(local.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local).parts)
    }


def prepare_dataset(
    config: DatasetConfig, local_dir: Path, source: Path | str | None = None, *, progress: bool = False
) -> Path:
    """A verified local copy of the dataset of ``config``; fetched from / published to a bucket source."""
    if source is None or not is_store_url(source):
        return build_dataset(config, Path(source) if source is not None else local_dir, progress)
    store = open_store(str(source))
    unit = dataset_unit(config)
    local = Path(local_dir)
    if unit in complete_units(store.list(f"{unit}/")):
        marker = read_marker(store, unit)
        wanted = marker.meta.get("manifest_sha256")
        if not ((local / MANIFEST).is_file() and sha256_of(local / MANIFEST) == wanted):
            fetch_unit(store, unit, local, marker=marker)
            log.info("fetched the dataset %s into %s", store.child_url(unit), local)
        return build_dataset(config, local, progress)  # verifies every file against the manifest
    path = build_dataset(config, local, progress)
    publish_unit(store, unit, _dataset_files(path), meta={"manifest_sha256": sha256_of(path / MANIFEST)})
    log.info("published the dataset built in %s to %s", path, store.child_url(unit))
    return path
