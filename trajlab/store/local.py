"""LocalStore: a Store on a local directory (writes are atomic and durable: trajlab.atomic)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from trajlab.atomic import atomic_open
from trajlab.store.base import ObjectInfo, ObjectMissing, Store, StoreError, StoreNotFound, check_key


class LocalStore(Store):
    """Objects are files under ``root``; keys are their relative paths."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self._create = create

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, fill: object) -> None:
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(dst, "wb") as fh:  # a hidden temp name, which list() skips
            fill(fh)  # type: ignore[operator]

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path) -> None:
        with Path(path).open("rb") as src:
            self._write(key, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))

    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        p = self._path(key)
        try:
            if max_bytes is not None and p.stat().st_size > max_bytes:
                raise StoreError(f"{p} is larger than {max_bytes} bytes")
            return p.read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"{p} does not exist") from None

    def get_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise ObjectMissing(f"{self._path(key)} does not exist") from None

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue  # temp files of writes in progress, locks
                p = Path(dirpath) / name
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = p.stat()
                    out.append(ObjectInfo(key, st.st_size, str(st.st_mtime_ns)))
        return sorted(out, key=lambda o: o.key)

    def delete(self, keys: list[str]) -> None:
        for k in keys:
            self._path(k).unlink(missing_ok=True)

    def check(self) -> None:
        if self.root.is_dir():
            return
        if not self._create:
            raise StoreNotFound(f"{self.root} does not exist")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.root} cannot be created: {exc}") from None
