"""Object storage for datasets, checkpoints, models and reports: a local path or a bucket.

``open_store("s3://bucket/prefix")`` or ``open_store("/some/dir")`` gives a
:class:`~trajlab.store.base.Store` (put/get/list by prefix/delete). S3 has no
rename, so groups of files are published as *units* (``trajlab.store.units``):
the files first, then a ``_COMPLETE.json`` marker holding each file's sha256,
written last; readers only see complete units whose hashes match.
"""

from trajlab.store.base import (
    ObjectInfo,
    Store,
    StoreAccessDenied,
    StoreError,
    StoreNotFound,
    StoreUnreachable,
)
from trajlab.store.location import Location, StoreUrl, is_store_url, open_store, parse_location

__all__ = [
    "Location",
    "ObjectInfo",
    "Store",
    "StoreAccessDenied",
    "StoreError",
    "StoreNotFound",
    "StoreUnreachable",
    "StoreUrl",
    "is_store_url",
    "open_store",
    "parse_location",
]
