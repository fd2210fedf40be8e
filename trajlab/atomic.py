"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The content goes to a temporary file beside the target (``.<name>.tmp-<random>``, same
folder so the rename cannot cross file systems), is flushed and, by default, fsynced;
then it is renamed over the target and the folder is fsynced, so after a crash or
``kill -9`` at any moment the target holds either the previous content or the new one.
``fsync=False`` keeps the rename (no half files) but not the durability, for bulk data
that a checksum verifies on the next read (the dataset's clips). A failed write leaves
no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_MARK = ".tmp-"  # temporary names are ".<target name>.tmp-<random>"


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, fsync: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file to write; on a clean exit it replaces ``path`` (see the module doc).

    ``mode`` is "wb" or "w" (text, UTF-8). On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    tmp = target.with_name(f".{target.name}{TMP_MARK}{secrets.token_hex(6)}")
    # Not mkstemp: its 0600 would make the file unreadable to other users; 0666 & ~umask like open().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", fsync=fsync) as fh:
        fh.write(text)
