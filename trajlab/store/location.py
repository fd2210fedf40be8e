"""Locations in settings: ``s3://bucket/prefix`` (a bucket) or a local path, and opening them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from trajlab.store.base import Store
from trajlab.store.local import LocalStore

SCHEME = "s3://"


class StoreUrl(str):
    """``s3://bucket[/prefix]``, validated: a bucket name and an optional prefix."""

    __slots__ = ()

    def __new__(cls, value: str) -> StoreUrl:
        if not value.startswith(SCHEME):
            raise ValueError(f"not an s3:// URL: {value!r}")
        rest = value[len(SCHEME) :]
        bucket, _, prefix = rest.partition("/")
        if not bucket or not all(c.isalnum() or c in "-._" for c in bucket) or not 3 <= len(bucket) <= 63:
            raise ValueError(
                f"{value!r}: expected s3://<bucket>/<prefix> with a bucket name of 3-63 "
                "letters, digits, '-', '.' or '_'"
            )
        if any(p in (".", "..") for p in prefix.split("/")):
            raise ValueError(f"{value!r}: the prefix may not contain '.' or '..' parts")
        return super().__new__(cls, f"{SCHEME}{bucket}/{prefix.strip('/')}".rstrip("/"))

    @property
    def bucket(self) -> str:
        return self[len(SCHEME) :].partition("/")[0]

    @property
    def prefix(self) -> str:
        return self[len(SCHEME) :].partition("/")[2]

    def joinpath(self, *parts: str) -> StoreUrl:
        return StoreUrl("/".join([self.rstrip("/"), *(p.strip("/") for p in parts)]))

    __truediv__ = joinpath


def is_store_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_location(value: Any) -> Path | StoreUrl:
    """A settings value -> StoreUrl for ``s3://...``, else a Path."""
    if isinstance(value, (StoreUrl, Path)):
        return value
    if isinstance(value, str):
        if "://" in value and not value.startswith(SCHEME):
            raise ValueError(f"{value!r}: only s3:// URLs or local paths are supported")
        return StoreUrl(value) if value.startswith(SCHEME) else Path(value)
    raise ValueError(f"expected a path or an s3://bucket/prefix URL, got {type(value).__name__}")


# A settings field type: ``model_repo: Location = Path("./models")``.
Location = Annotated[Path | StoreUrl, PlainValidator(parse_location), PlainSerializer(str, return_type=str)]


def open_store(location: Path | str, *, endpoint_url: str | None = None) -> Store:
    """The Store at a location: S3Store for ``s3://bucket/prefix``, else LocalStore."""
    if is_store_url(location):
        from trajlab.store.s3 import S3Store

        url = StoreUrl(str(location))
        return S3Store(url.bucket, url.prefix, endpoint_url=endpoint_url)
    return LocalStore(Path(location))
