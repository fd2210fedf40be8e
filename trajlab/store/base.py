"""The Store contract: a flat key space of immutable-once-written objects under a root.

Keys are ``/``-separated relative names (``b1/3/model.onnx``). Implementations:
:class:`trajlab.store.local.LocalStore` (a directory) and
:class:`trajlab.store.s3.S3Store` (a bucket and prefix, through boto3).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import grpc

from trajlab.errors import TrajlabError


class StoreError(TrajlabError):
    """A store could not be used; the message names the store and what to check."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class StoreAccessDenied(StoreError):
    """The credentials were refused (unknown key, wrong secret, no permission)."""


class StoreNotFound(StoreError):
    """The bucket (or local root) does not exist."""


class StoreUnreachable(StoreError):
    """The endpoint could not be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class ObjectMissing(StoreError):
    """A key that was expected is not in the store (deleted meanwhile, or never written)."""

    code = grpc.StatusCode.NOT_FOUND


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key relative to the store's root, its size in bytes, and a tag
    that changes when the object is rewritten (S3's ETag; mtime for a local file)."""

    key: str
    size: int
    etag: str = ""


def check_key(key: str) -> str:
    """Refuse keys that are absolute, empty or climb out of the root."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a store key: {key!r} (expected relative names separated by '/')")
    return key


class Store(abc.ABC):
    """put/get/list/delete of whole objects under one root (a directory or a bucket prefix)."""

    url: str  # where the store points, for messages (never holds credentials)

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` (replacing what was there)."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file under ``key``."""

    @abc.abstractmethod
    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        """The object's content; ObjectMissing when absent, StoreError when over ``max_bytes``."""

    @abc.abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Download ``key`` to the local ``path`` (its parent must exist)."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key (one listing call, paged)."""

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> None:
        """Delete these keys (missing ones are ignored)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise a StoreError now if the store cannot be used (credentials, bucket, endpoint)."""

    def child_url(self, key: str) -> str:
        """The URL (or path) of ``key``, for messages and results."""
        return f"{self.url.rstrip('/')}/{key}"
