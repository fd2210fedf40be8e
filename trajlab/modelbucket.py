"""The model repository in a bucket: ``<prefix>/<branch>/<version>/{model.onnx, metadata.json}``.

The same layout as ``trajlab.modelrepo`` on disk, published as a unit
(``trajlab.store.units``): the model and its metadata are uploaded, then
``_COMPLETE.json`` with their sha256 last. A version without its marker (an upload in
progress or killed) is never listed as complete, so the encoder never serves it.

``publish_model`` is what a trainer calls for either kind of repository.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from trajlab.modelrepo import METADATA_FILE, MODEL_FILE, ModelMetadata, publish_version, sha256_file, utc_now
from trajlab.store import StoreUrl, is_store_url, open_store
from trajlab.store.base import ObjectInfo, Store
from trajlab.store.units import complete_units, publish_unit

log = logging.getLogger(__name__)


def _parse(key: str) -> tuple[str, int] | None:
    """``b1/3`` -> ("b1", 3); anything else (temp names, non-integer versions) -> None."""
    branch, sep, version = key.partition("/")
    if not sep or "/" in version or not version.isdigit() or not branch or branch.startswith("."):
        return None
    return branch, int(version)


def complete_versions(listing: list[ObjectInfo]) -> dict[str, list[int]]:
    """Complete versions by branch (ascending), from one listing of the repository's prefix."""
    out: dict[str, list[int]] = {}
    for unit in complete_units(listing):
        parsed = _parse(unit)
        if parsed is not None:
            out.setdefault(parsed[0], []).append(parsed[1])
    return {b: sorted(vs) for b, vs in sorted(out.items())}


def _highest_version(store: Store, branch: str) -> int:
    """The highest version number under ``branch/``, complete or not (a killed upload keeps its number)."""
    top = 0
    for o in store.list(f"{branch}/"):
        parsed = _parse(o.key.rpartition("/")[0])
        if parsed is not None:
            top = max(top, parsed[1])
    return top


def publish_to_store(
    store: Store, branch: str, model_path: Path, metadata: dict[str, Any], staging: Path
) -> tuple[int, Path]:
    """Publish a model version as a unit; returns (version, the local staged copy's directory)."""
    version = _highest_version(store, branch) + 1
    vdir = Path(staging) / branch / str(version)
    if vdir.exists():
        shutil.rmtree(vdir)
    vdir.mkdir(parents=True)
    shutil.copyfile(model_path, vdir / MODEL_FILE)
    meta = dict(metadata)
    meta.update(
        version=version,
        model_sha256=sha256_file(vdir / MODEL_FILE),
        model_size_bytes=(vdir / MODEL_FILE).stat().st_size,
        created_at=utc_now(),
    )
    (vdir / METADATA_FILE).write_text(ModelMetadata.model_validate(meta).model_dump_json(indent=2))
    publish_unit(
        store,
        f"{branch}/{version}",
        {MODEL_FILE: vdir / MODEL_FILE, METADATA_FILE: vdir / METADATA_FILE},
        meta={"branch": branch, "version": version},
    )
    log.info("published model %s v%d to %s", branch, version, store.child_url(f"{branch}/{version}"))
    return version, vdir


def publish_model(
    repo: Path | str, branch: str, model_path: Path, metadata: dict[str, Any], *, staging: Path
) -> tuple[int, Path]:
    """Publish to a directory (``trajlab.modelrepo``) or a bucket (``s3://...``); (version, local dir)."""
    if is_store_url(repo):
        return publish_to_store(open_store(StoreUrl(str(repo))), branch, model_path, metadata, staging)
    return publish_version(Path(repo), branch, model_path, metadata)
