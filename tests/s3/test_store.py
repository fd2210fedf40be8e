"""The store contract on a real S3 server: units, markers, hashes, and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from trajlab.store import StoreAccessDenied, StoreNotFound, open_store
from trajlab.store.units import MARKER, UnitCorrupt, complete_units, delete_unit, fetch_unit, publish_unit

pytestmark = pytest.mark.s3


def _files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a.bin").write_bytes(b"a" * 1000)
    (tmp_path / "b.json").write_text('{"x": 1}')
    return {"a.bin": tmp_path / "a.bin", "b.json": tmp_path / "b.json"}


def test_a_unit_is_visible_only_once_its_marker_is_written_and_is_fetched_verified(
    bucket: str, tmp_path: Path
) -> None:
    store = open_store(f"s3://{bucket}/units")
    files = _files(tmp_path)
    # An upload killed before its marker: the files are there, the unit is not.
    store.put_file("u1/a.bin", files["a.bin"])
    assert complete_units(store.list("")) == {}
    publish_unit(store, "u2", files, meta={"k": "v"})
    assert complete_units(store.list("")) == {"u2": {"a.bin": 1000, "b.json": 8}}
    marker = fetch_unit(store, "u2", tmp_path / "got")
    assert marker.meta == {"k": "v"}
    assert (tmp_path / "got" / "a.bin").read_bytes() == b"a" * 1000
    delete_unit(store, "u2", ["a.bin", "b.json"])
    assert store.list("u2/") == []


def test_an_object_that_does_not_match_its_marker_is_refused_and_nothing_is_left(
    bucket: str, tmp_path: Path
) -> None:
    store = open_store(f"s3://{bucket}")
    publish_unit(store, "u", _files(tmp_path))
    store.put_bytes("u/a.bin", b"b" * 1000)  # same size, other bytes
    with pytest.raises(UnitCorrupt, match=r"a\.bin does not match its completion marker"):
        fetch_unit(store, "u", tmp_path / "got")
    assert not (tmp_path / "got").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    store.put_bytes(f"u/{MARKER}", b"{not json")
    with pytest.raises(UnitCorrupt, match="not a valid marker"):
        fetch_unit(store, "u", tmp_path / "got")


def test_wrong_credentials_give_one_clear_error_without_the_secret(
    bucket: str, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-42")
    with pytest.raises(StoreAccessDenied) as err:
        open_store(f"s3://{bucket}/models").check()
    msg = str(err.value)
    assert f"s3://{bucket}/models" in msg and "credentials were refused" in msg
    assert "AWS_SECRET_ACCESS_KEY" in msg and "not-the-secret-42" not in msg
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(StoreAccessDenied, match="InvalidAccessKeyId"):
        open_store(f"s3://{bucket}").list("")


def test_a_missing_bucket_gives_one_clear_error(s3_env: dict[str, str]) -> None:
    with pytest.raises(StoreNotFound, match="bucket 'no-such-bucket-x' does not exist"):
        open_store("s3://no-such-bucket-x/models").check()
