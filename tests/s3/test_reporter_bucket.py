"""The reporter with its reports and validation data in a bucket (real S3 server)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.reporter.build import ReportSources, build_report
from services.reporter.settings import ReporterSettings
from services.reporter.storage import local_validation_dir
from tests.contract.reporter import kit
from tests.contract.reporter.conftest import make_sources, world  # noqa: F401 - fixtures
from tests.reliability.procs import ROOT
from tests.unit.trainer import kit as tkit
from trajlab.config import load_settings
from trajlab.data import load_dataset
from trajlab.store import open_store
from trajlab.store.datasets import dataset_unit, prepare_dataset
from trajlab.store.units import complete_units, fetch_unit

pytestmark = pytest.mark.s3


def test_a_report_is_published_to_the_bucket_as_one_complete_unit(
    bucket: str,
    s3_env: dict[str, str],
    world: kit.FakeWorld,  # noqa: F811
    make_sources: Callable[..., ReportSources],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = load_settings(
        ReporterSettings,
        reports_dir=f"s3://{bucket}/reports",
        cache_dir=tmp_path / "cache",
        describe_samples=1,
    )
    result = build_report(make_sources(trainers=dict(kit.iter_targets(world))), settings)
    store = open_store(f"s3://{bucket}/reports")
    units = complete_units(store.list(""))
    assert list(units) == [result.report_dir.name]
    got = tmp_path / "got"
    fetch_unit(store, result.report_dir.name, got)
    assert (got / "PARALLEL_RESULTS_COMPARISON.md").read_text() == result.markdown_path.read_text()
    assert (got / "report.json").read_bytes() == result.json_path.read_bytes()
    assert {p.name for p in got.glob("*.png")} == {p.name for p in result.figure_paths}
    assert result.figure_paths, "the report has figures"


def test_validation_data_is_read_from_the_bucket_and_cached_locally(
    bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tkit.write_profile_yaml(tmp_path / "tiny.yaml", tkit.tiny_profile())
    # A trainer built and published the dataset (a unit named after its config).
    built = prepare_dataset(tkit.TINY_DATASET, tmp_path / "trainer-data", f"s3://{bucket}/data")
    assert dataset_unit(tkit.TINY_DATASET) in complete_units(open_store(f"s3://{bucket}/data").list(""))
    settings = load_settings(
        ReporterSettings, data_dir=f"s3://{bucket}/data", profile=str(profile), cache_dir=tmp_path / "cache"
    )
    local = local_validation_dir(settings)
    assert local.is_relative_to(tmp_path / "cache")
    assert (local / "manifest.json").read_bytes() == (built / "manifest.json").read_bytes()
    assert load_dataset(local, expected_config=tkit.TINY_DATASET).manifest_sha256


@pytest.mark.parametrize("problem", ["wrong credentials", "missing bucket"])
def test_the_reporter_process_stops_at_start_with_one_clear_error(
    problem: str, bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJLAB_")}
    env.update(s3_env)
    url = f"s3://{bucket}/reports"
    if problem == "wrong credentials":
        env["AWS_ACCESS_KEY_ID"] = "nobody-here"
        expected = "the S3 credentials were refused (InvalidAccessKeyId)"
    else:
        url = "s3://no-such-reports-bucket/reports"
        expected = "bucket 'no-such-reports-bucket' does not exist"
    env.update(
        TRAJLAB_REPORTER_PORT="0", TRAJLAB_REPORTER_METRICS_PORT="-1", TRAJLAB_REPORTER_REPORTS_DIR=url
    )
    done = subprocess.run(
        [sys.executable, "-m", "services.reporter"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert expected in out and url in out and "Traceback" not in out, out
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in out
