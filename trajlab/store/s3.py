"""S3Store: a Store on an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, Ceph) through boto3.

Where the client connects and with what comes from the environment, never from
settings files that might be logged:

- credentials: boto3's own chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
  a mounted credentials file named by ``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_PROFILE``,
  web identity or instance roles);
- endpoint: ``TRAJLAB_S3_ENDPOINT_URL`` (else boto3's ``AWS_ENDPOINT_URL_S3`` /
  ``AWS_ENDPOINT_URL``, else AWS); path-style addressing when an endpoint is given
  (``TRAJLAB_S3_ADDRESSING_STYLE`` overrides);
- region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1``.

Every botocore error is turned into one StoreError that names the bucket and what
to check (credentials refused, bucket missing, endpoint unreachable); no message
ever contains a secret.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NoReturn

from trajlab.store.base import (
    ObjectInfo,
    ObjectMissing,
    Store,
    StoreAccessDenied,
    StoreError,
    StoreNotFound,
    StoreUnreachable,
    check_key,
)

_DENIED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "403",
}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


def _env_number(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise StoreError(f"{name}={raw!r}: expected a number in [{low:g}, {high:g}]")
    return value


def _client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or os.environ.get("TRAJLAB_S3_ENDPOINT_URL") or None
    style = os.environ.get("TRAJLAB_S3_ADDRESSING_STYLE") or ("path" if endpoint else "auto")
    if style not in ("path", "virtual", "auto"):
        raise StoreError(f"TRAJLAB_S3_ADDRESSING_STYLE={style!r}: expected path, virtual or auto")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        s3={"addressing_style": style},
        retries={"mode": "standard", "max_attempts": int(_env_number("TRAJLAB_S3_MAX_ATTEMPTS", 3, 1, 20))},
        connect_timeout=_env_number("TRAJLAB_S3_CONNECT_TIMEOUT", 5.0, 0.1, 300.0),
        read_timeout=60,
    )
    # botocore at DEBUG prints request signatures and headers: never below INFO in our logs.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() < logging.INFO:
            lg.setLevel(logging.INFO)
    session = boto3.session.Session(region_name=region)
    return session.client("s3", endpoint_url=endpoint, config=config)


class S3Store(Store):
    """Objects under ``s3://bucket/prefix/``; keys are relative to the prefix."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._s3 = _client(endpoint_url)
        self.endpoint = self._s3.meta.endpoint_url

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, exc: Exception, what: str) -> NoReturn:
        """Raise the one clear StoreError for a botocore/boto3 exception."""
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = f"{self.url} (endpoint {self.endpoint})"
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            raise StoreAccessDenied(
                f"{what} {where}: no S3 credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or mount a credentials file and set AWS_SHARED_CREDENTIALS_FILE"
            ) from None
        if isinstance(exc, EndpointConnectionError):
            raise StoreUnreachable(
                f"{what} {where}: cannot reach the S3 endpoint; check TRAJLAB_S3_ENDPOINT_URL"
            ) from None
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise StoreNotFound(
                    f"{what} {where}: bucket {self.bucket!r} does not exist; create it or fix the URL"
                ) from None
            if code in _DENIED or status == 403:
                raise StoreAccessDenied(
                    f"{what} {where}: the S3 credentials were refused ({code or status}); check "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the mounted credentials file, and the "
                    "key's permissions on the bucket"
                ) from None
            raise StoreError(f"{what} {where}: S3 error {code or status}: {err.get('Message', '')}") from None
        raise StoreError(f"{what} {where}: {type(exc).__name__}: {exc}") from None

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if "Key" in kwargs and code in _MISSING_KEY:
                raise ObjectMissing(f"{self.child_url(kwargs['Key'])} does not exist") from None
            self._fail(exc, what)
        except BotoCoreError as exc:
            self._fail(exc, what)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("writing to", self._s3.put_object, Key=self._key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        with Path(path).open("rb") as fh:
            self._call("writing to", self._s3.put_object, Key=self._key(key), Body=fh)

    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        resp = self._call("reading from", self._s3.get_object, Key=self._key(key))
        if max_bytes is not None and int(resp.get("ContentLength", 0)) > max_bytes:
            resp["Body"].close()
            raise StoreError(f"{self.child_url(key)} is larger than {max_bytes} bytes")
        try:
            return bytes(resp["Body"].read())
        except Exception as exc:  # a connection dropped mid-body
            self._fail(exc, "reading from")

    def get_file(self, key: str, path: Path) -> None:
        resp = self._call("reading from", self._s3.get_object, Key=self._key(key))
        try:
            with Path(path).open("wb") as fh:
                for chunk in resp["Body"].iter_chunks(1 << 20):
                    fh.write(chunk)
        except OSError:
            raise
        except Exception as exc:
            self._fail(exc, "reading from")

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        full = (f"{self.prefix}/" if self.prefix else "") + prefix
        out: list[ObjectInfo] = []
        token: str | None = None
        strip = len(self.prefix) + 1 if self.prefix else 0
        while True:
            kwargs: dict[str, Any] = {"Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("listing", self._s3.list_objects_v2, **kwargs)
            for o in resp.get("Contents", []):
                out.append(ObjectInfo(o["Key"][strip:], int(o["Size"]), str(o.get("ETag", ""))))
            if not resp.get("IsTruncated"):
                break
            token = resp.get("NextContinuationToken")
        return sorted(out, key=lambda o: o.key)

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            if batch:
                self._call("deleting from", self._s3.delete_objects, Delete={"Objects": batch, "Quiet": True})

    def check(self) -> None:
        self._call(
            "opening", self._s3.list_objects_v2, Prefix=f"{self.prefix}/" if self.prefix else "", MaxKeys=1
        )
