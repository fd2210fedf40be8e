"""`python -m services.reporter` as a process: env settings, health, the build-when-done trigger, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.contract.reporter import kit

ROOT = Path(__file__).resolve().parents[3]


def test_service_builds_once_when_trainers_are_done_and_stops_on_sigterm(
    world: kit.FakeWorld, tmp_path: Path
) -> None:
    port = kit.free_port()
    env = {
        **os.environ,
        "TRAJLAB_REPORTER_PORT": str(port),
        "TRAJLAB_REPORTER_METRICS_PORT": "0",
        "TRAJLAB_REPORTER_TRAINERS": ",".join(f"{b}={t}" for b, t in kit.iter_targets(world)),
        "TRAJLAB_REPORTER_ENCODER_TARGET": world.encoder.target,
        "TRAJLAB_REPORTER_DESCRIBER_TARGET": world.describer.target,
        "TRAJLAB_REPORTER_REPORTS_DIR": str(tmp_path / "reports"),
        "TRAJLAB_REPORTER_DATA_DIR": str(tmp_path / "no-dataset"),
        "TRAJLAB_REPORTER_BUILD_WHEN_DONE": "true",
        "TRAJLAB_REPORTER_BUILD_WHEN_DONE_POLL_SECONDS": "0.5",
        "TRAJLAB_REPORTER_GRACE_SECONDS": "2",
    }
    log = (tmp_path / "reporter.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.reporter"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def serving() -> bool:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    r = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=1
                    )
                return r.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

        assert kit.wait_until(serving, 60), (tmp_path / "reporter.log").read_text()
        # Every fake trainer is DONE or FAILED: one report appears without anyone asking.
        assert kit.wait_until(lambda: any((tmp_path / "reports").glob("*/report.html")), 90), (
            tmp_path / "reporter.log"
        ).read_text()
        md = next((tmp_path / "reports").glob("*/PARALLEL_RESULTS_COMPARISON.md")).read_text()
        assert "**Leader by the rule: b2.**" in md
        assert "could not load the evaluation clips" in md  # no dataset at the given data dir: said so
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "reporter.log").read_text()
    assert len(list((tmp_path / "reports").glob("*/report.html"))) == 1
