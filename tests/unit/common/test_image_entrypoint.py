"""The one Dockerfile's per-service pieces, run as the image runs them (deploy/docker/).

``service.py run`` is every image's ENTRYPOINT and ``healthcheck.py`` its HEALTHCHECK; both
name the service through ``TRAJLAB_SERVICE`` (the Dockerfile's SERVICE argument). Checked
here as processes, without Docker: the entrypoint gives the service its defaults but never
overrides the container's environment and refuses an unknown service by name; the
healthcheck of a trainer training a seed group is healthy only when every seed serves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "deploy" / "docker"


def _run(script: str, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAJLAB_")}
    return subprocess.run(
        [sys.executable, str(DOCKER / script), *args],
        env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def test_the_entrypoint_refuses_an_unknown_service_by_name() -> None:
    out = _run("service.py", "run", TRAJLAB_SERVICE="trainr")
    assert out.returncode != 0
    assert "TRAJLAB_SERVICE" in out.stderr and "trainer" in out.stderr and "'trainr'" in out.stderr


def test_the_entrypoint_sets_defaults_under_the_containers_own_environment(tmp_path: Path) -> None:
    # A stand-in `services.describer` that prints the environment the entrypoint exec'd it with.
    pkg = tmp_path / "services" / "describer"
    pkg.mkdir(parents=True)
    (tmp_path / "services" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import os, sys\nprint(sorted((k, v) for k, v in os.environ.items() if k.startswith('TRAJLAB_DESCRIBER_')))\n"
        "print(sys.argv[1:])\n"
    )
    out = _run("service.py", "run", "--flag", cwd=tmp_path, TRAJLAB_SERVICE="describer",
               PYTHONPATH=str(tmp_path), TRAJLAB_DESCRIBER_PORT="6000")
    assert out.returncode == 0, out.stderr
    env, argv = out.stdout.splitlines()
    assert env == str(sorted({
        "TRAJLAB_DESCRIBER_HOST": "0.0.0.0",  # reachable from outside the container
        "TRAJLAB_DESCRIBER_METRICS_HOST": "0.0.0.0",
        "TRAJLAB_DESCRIBER_METRICS_PORT": "9100",
        "TRAJLAB_DESCRIBER_PORT": "6000",  # the container's own value wins over the table's 50053
    }.items()))
    assert argv == "['--flag']"


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield port, servicer
    server.stop(0)


def test_a_seed_groups_healthcheck_waits_for_every_seed(health_server: tuple[int, object]) -> None:
    port, _ = health_server
    # One trainer on `port`: healthy alone; as a group of two, seed 1 (port + 1) does not answer.
    assert _run("healthcheck.py", "trainer", TRAJLAB_TRAINER_PORT=str(port)).returncode == 0
    grouped = _run("healthcheck.py", "trainer", TRAJLAB_TRAINER_PORT=str(port), TRAJLAB_TRAINER_SEEDS="2")
    assert grouped.returncode == 1
    assert f":{port}: SERVING" in grouped.stdout and f":{port + 1}: UNAVAILABLE" in grouped.stdout
    # The service named by the image's TRAJLAB_SERVICE when no argument is given.
    assert _run("healthcheck.py", TRAJLAB_SERVICE="encoder", TRAJLAB_ENCODER_PORT=str(port)).returncode == 0
