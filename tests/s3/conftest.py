"""Fixtures of the s3 tests: one real S3 server (SeaweedFS) per session, a fresh bucket per test.

Without the server binary, or when it cannot start, the tests are skipped locally and
FAIL in CI (CI=true): a skip there would hide that nothing was tested.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import _missing
from tests.s3.seaweed import S3Server, start_s3_server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    except RuntimeError as exc:  # CI fails here, never skips (tests/conftest.py)
        _missing("the S3 server for the s3 tests", str(exc))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment pointed at the test server (also returned, for subprocesses)."""
    env = s3_server.env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A new, empty bucket for one test."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_env["TRAJLAB_S3_ENDPOINT_URL"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name
