"""Units: a group of files published so that readers see all of it or none of it.

S3 has no rename, so a unit ``<name>/`` is published by uploading its files, then a
marker ``<name>/_COMPLETE.json`` LAST, holding each file's sha256 and size. Readers
list by prefix once, consider only units whose marker exists, and verify every file
against the marker as they download it: a unit being uploaded (or whose upload was
killed) is invisible, and a corrupt or replaced object is refused.

Deleting a unit removes the marker first, so a half-deleted unit is invisible too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trajlab.store.base import ObjectInfo, Store, StoreError, check_key

MARKER = "_COMPLETE.json"
MAX_MARKER_BYTES = 1024 * 1024


class UnitCorrupt(StoreError):
    """A complete unit's file does not match its marker (size or sha256), or the marker is invalid."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Marker(BaseModel):
    """The content of ``_COMPLETE.json``."""

    model_config = ConfigDict(extra="forbid")
    format: int = 1
    files: dict[str, FileEntry]
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: str = ""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def publish_unit(
    store: Store, name: str, files: Mapping[str, Path], meta: Mapping[str, Any] | None = None
) -> Marker:
    """Upload ``files`` (name in the unit -> local path) under ``name/``, then the marker."""
    entries: dict[str, FileEntry] = {}
    for rel, path in files.items():
        check_key(rel)
        if rel == MARKER:
            raise ValueError(f"a unit's file may not be called {MARKER}")
        entries[rel] = FileEntry(sha256=sha256_of(path), size=Path(path).stat().st_size)
        store.put_file(f"{name}/{rel}", Path(path))
    marker = Marker(
        files=entries, meta=dict(meta or {}), created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    store.put_bytes(f"{name}/{MARKER}", marker.model_dump_json(indent=1).encode())
    return marker


def complete_units(listing: Iterable[ObjectInfo], under: str = "") -> dict[str, dict[str, int]]:
    """From one listing: ``{unit name: {file: size}}`` of the units under ``under`` with a marker."""
    files: dict[str, dict[str, int]] = {}
    marked: set[str] = set()
    for o in listing:
        if not o.key.startswith(under):
            continue
        unit, sep, rel = o.key.rpartition("/")
        if not sep:
            continue
        if rel == MARKER:
            marked.add(unit)
        files.setdefault(unit, {})[rel] = o.size
    return {u: {k: v for k, v in files[u].items() if k != MARKER} for u in sorted(marked)}


def read_marker(store: Store, name: str) -> Marker:
    raw = store.get_bytes(f"{name}/{MARKER}", max_bytes=MAX_MARKER_BYTES)
    try:
        return Marker.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
        raise UnitCorrupt(f"{store.child_url(name)}/{MARKER} is not a valid marker: {exc}") from None


def fetch_unit(store: Store, name: str, dest: Path, *, marker: Marker | None = None) -> Marker:
    """Download a complete unit into the new directory ``dest``, atomically and verified.

    Files go to a temp directory beside ``dest``; each is checked against the marker's
    size and sha256; only then is the directory renamed to ``dest``. A mismatch raises
    UnitCorrupt and leaves nothing behind.
    """
    marker = marker or read_marker(store, name)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-fetch-", dir=dest.parent))
    try:
        for rel, entry in marker.files.items():
            check_key(rel)
            local = tmp / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            store.get_file(f"{name}/{rel}", local)
            size, digest = local.stat().st_size, sha256_of(local)
            if size != entry.size or digest != entry.sha256:
                raise UnitCorrupt(
                    f"{store.child_url(name)}/{rel} does not match its completion marker "
                    f"(sha256 {digest[:12]}..., {size} bytes; "
                    f"expected {entry.sha256[:12]}..., {entry.size} bytes)"
                )
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return marker


def delete_unit(store: Store, name: str, files: Iterable[str] = ()) -> None:
    """Remove a unit: its marker first (so it stops being complete), then its files."""
    store.delete([f"{name}/{MARKER}"])
    rest = [f"{name}/{f}" for f in files if f != MARKER]
    if rest:
        store.delete(rest)
