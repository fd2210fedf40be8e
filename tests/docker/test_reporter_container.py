"""The reporter image, started with testcontainers, writes a report even when sources are down.

Its sources here are unreachable on purpose (a trainer address where nothing listens,
no encoder, describer or Prometheus): the report must still be written to the mounted
folder, say what is missing and why, and declare no invented winner. The full
pipeline with real sources is covered by test_compose_e2e.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.docker.containers import ReporterContainer
from trajlab.reporter.v1 import reporter_pb2

# Generous: the first test of a session may build its image from scratch (minutes on 2 cores).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def reports() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="trajlab-reports-"))
    d.chmod(0o777)  # written by the image's user, uid 10001
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def reporter(image, reports: Path) -> Iterator[ReporterContainer]:  # type: ignore[no-untyped-def]
    c = ReporterContainer(
        image=image("reporter"),
        TRAJLAB_REPORTER_TRAINERS="b1=127.0.0.1:1,b2=127.0.0.1:1",  # nothing listens there
        TRAJLAB_REPORTER_ENCODER_TARGET="",
        TRAJLAB_REPORTER_DESCRIBER_TARGET="",
        TRAJLAB_REPORTER_PROMETHEUS_URL="",
        TRAJLAB_REPORTER_RPC_TIMEOUT_SECONDS="2",
    )
    c.with_volume_mapping(str(reports), "/reports", "rw")
    with c:
        yield c


def test_report_is_written_and_names_what_is_missing(reporter: ReporterContainer, reports: Path) -> None:
    resp = reporter.stub().BuildReport(reporter_pb2.BuildReportRequest(), timeout=120)
    assert resp.report_dir.startswith("/reports/")
    host_dir = reports / Path(resp.report_dir).relative_to("/reports")
    assert (host_dir / Path(resp.markdown_path).name).is_file()
    assert (host_dir / Path(resp.html_path).name).is_file()
    assert {r.branch for r in resp.summary} == {"b1", "b2"}
    assert all(r.missing_reason for r in resp.summary)  # no numbers without a source
    assert resp.missing and all(m.reason for m in resp.missing)
    assert not resp.winner  # no winner declared from missing data


@pytest.mark.parametrize(
    "request_",
    [reporter_pb2.BuildReportRequest(winner_rule="coin-toss"), reporter_pb2.BuildReportRequest(describe_samples=101)],
    ids=["unknown-winner-rule", "too-many-samples"],
)
def test_bad_requests_are_invalid_argument(reporter: ReporterContainer, request_) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        reporter.stub().BuildReport(request_, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details()
