"""trajlab.store without a server: locations in settings, and units on a local directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from trajlab.config import load_settings
from trajlab.errors import ConfigError
from trajlab.modelbucket import complete_versions
from trajlab.store import StoreUrl, open_store, parse_location
from trajlab.store.local import LocalStore
from trajlab.store.units import MARKER, UnitCorrupt, complete_units, fetch_unit, publish_unit


def test_locations_are_urls_or_paths_and_bad_urls_are_refused_with_the_reason() -> None:
    url = parse_location("s3://my-bucket/models/")
    assert isinstance(url, StoreUrl) and url == "s3://my-bucket/models"
    assert (url.bucket, url.prefix) == ("my-bucket", "models")
    assert parse_location("./models") == Path("models")
    with pytest.raises(ValueError, match="bucket name"):
        parse_location("s3:///models")
    with pytest.raises(ValueError, match="only s3:// URLs or local paths"):
        parse_location("gs://bucket/x")
    with pytest.raises(ValueError, match=r"'\.' or '\.\.'"):
        parse_location("s3://bucket/a/../b")


def test_every_service_setting_takes_a_bucket_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.encoder.settings import EncoderSettings
    from services.reporter.settings import ReporterSettings
    from services.trainer.settings import TrainerSettings

    monkeypatch.setenv("TRAJLAB_TRAINER_RUN_DIR", "s3://runs-bucket/b1")
    t = load_settings(
        TrainerSettings, model_repo="s3://models-bucket/repo", data_dir="s3://data-bucket/quick"
    )
    assert t.resolved_run_dir() == "s3://runs-bucket/b1" and isinstance(t.model_repo, StoreUrl)
    assert isinstance(t.resolved_data_dir("quick"), StoreUrl)
    assert (
        load_settings(EncoderSettings, model_repo="s3://models-bucket/repo").model_repo
        == "s3://models-bucket/repo"
    )
    assert isinstance(load_settings(ReporterSettings, reports_dir="s3://r-bucket/x").reports_dir, StoreUrl)
    assert load_settings(EncoderSettings).model_repo == Path("models")  # paths as before
    with pytest.raises(ConfigError, match="model_repo"):
        load_settings(EncoderSettings, model_repo="s3://x/models")


def test_units_on_a_directory_follow_the_same_contract(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    assert isinstance(store, LocalStore)
    (tmp_path / "m.onnx").write_bytes(b"model")
    (tmp_path / "metadata.json").write_text("{}")
    files = {"model.onnx": tmp_path / "m.onnx", "metadata.json": tmp_path / "metadata.json"}
    publish_unit(store, "b1/1", files)
    store.put_file("b1/2/model.onnx", tmp_path / "m.onnx")  # a version without its marker
    publish_unit(store, "b2/7", files)
    assert complete_versions(store.list("")) == {"b1": [1], "b2": [7]}
    assert set(complete_units(store.list("b1/"))) == {"b1/1"}
    fetch_unit(store, "b1/1", tmp_path / "got")
    assert (tmp_path / "got" / "model.onnx").read_bytes() == b"model"
    store.put_bytes("b2/7/model.onnx", b"MODEL")
    with pytest.raises(UnitCorrupt, match="does not match its completion marker"):
        fetch_unit(store, "b2/7", tmp_path / "got2")
    with pytest.raises(ValueError, match="not a store key"):
        store.put_bytes("../escape", b"x")
    with pytest.raises(ValueError, match=MARKER):
        publish_unit(store, "u", {MARKER: tmp_path / "m.onnx"})


def test_trajlab_train_refuses_a_bad_location_naming_the_option() -> None:
    from typer.testing import CliRunner

    from trajlab_cli import app

    res = CliRunner().invoke(app, ["train", "--model-repo", "gs://bucket/models"])
    assert res.exit_code == 2  # bad input: one line on stderr naming the option
    assert "--model-repo: 'gs://bucket/models': only s3:// URLs or local paths are supported" in res.stderr
