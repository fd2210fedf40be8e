"""`docker compose up` on the quick profile, on the CPU, end to end.

The stack a user starts, less what needs a registry here: Grafana and the TGI
containers (official images that cannot be pulled). Prometheus runs as Debian's
build of it (trajlab/prometheus:debian, made by ``make images``) with the shipped
config, so "every target up" is checked for real. The test waits for the report the
reporter builds once every trainer is done, checks what it says, classifies a fresh
clip through the encoder's port published on 127.0.0.1, and checks that
``docker compose down -v`` leaves no container, network or volume behind.

Published host ports are randomised (an override file, loopback only), so the test
never collides with services a developer runs on the default ports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
PROJECT = "trajlab-e2e"
TRAINERS = [f"trainer-b{i}" for i in range(1, 5)]
SERVICES = [*TRAINERS, "encoder", "describer", "reporter", "prometheus"]
REPORT_TIMEOUT_S = 1500  # seconds: quick profile, four trainers sharing 2 cores
OVERRIDE = """
# Test-only: random loopback host ports instead of the fixed defaults.
services:
""" + "".join(
    f"  {name}:\n    ports: !override [\"127.0.0.1::{port}\"]\n"
    for name, port in [*[(t, 50052) for t in TRAINERS], ("encoder", 50051), ("describer", 50053),
                       ("reporter", 50054), ("prometheus", 9090)]
)


class Compose:
    def __init__(self, env: dict[str, str], override: Path) -> None:
        self.env = env
        self.base = ["docker", "compose", "-p", PROJECT, "-f", "compose.yaml", "-f", str(override)]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.base, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def port(self, service: str, port: int) -> str:
        out = self.run("port", service, str(port)).stdout.strip()
        host, _, p = out.rpartition(":")
        assert host == "127.0.0.1", out
        return f"127.0.0.1:{p}"

    def states(self) -> dict[str, str]:
        out = self.run("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()] if not out.startswith("[") else json.loads(out)
        return {r["Service"]: f'{r["State"]} {r.get("Health", "")}'.strip() for r in rows}

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40", check=False).stdout[-12000:]


def _docker_ls(kind: str) -> list[str]:
    cmd = ["docker", kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]
    if kind == "container":
        cmd.insert(3, "-a")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.split()


@pytest.fixture(scope="module")
def stack(image) -> Iterator[tuple[Compose, Path]]:  # type: ignore[no-untyped-def]
    for svc in ("trainer", "encoder", "describer", "reporter", "prometheus"):
        image(svc)
    base = subprocess.run(
        ["bash", "deploy/docker/base-image.sh"], cwd=REPO, capture_output=True, text=True, timeout=600, check=True
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="trajlab-e2e-"))
    reports = work / "reports"
    reports.mkdir()
    reports.chmod(0o777)  # the reporter runs as uid 10001
    override = work / "compose.override.yaml"
    override.write_text(OVERRIDE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAJLAB_", "OPENAI_"))}
    env.update(
        TRAJLAB_BASE_IMAGE=base,
        TRAJLAB_PROMETHEUS_IMAGE="trajlab/prometheus:debian",
        TRAJLAB_REPORTS_DIR=str(reports),
        TRAJLAB_PROFILE="quick",
    )
    compose = Compose(env, override)
    compose.run("down", "-v", "--remove-orphans", check=False)  # leftovers of an interrupted run
    try:
        compose.run("up", "-d", "--no-build", *SERVICES, timeout=900)
        yield compose, reports
    finally:
        compose.run("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=300)
        shutil.rmtree(work, ignore_errors=True)


def wait_for_report(compose: Compose, reports: Path) -> Path:
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while time.monotonic() < deadline:
        found = sorted(reports.glob("*/PARALLEL_RESULTS_COMPARISON.md"))
        if found:
            time.sleep(2)  # the HTML and figures are written beside it
            return found[-1].parent
        time.sleep(10)
    raise AssertionError(f"no report after {REPORT_TIMEOUT_S} s; states {compose.states()}\n{compose.logs()}")


def fresh_clip() -> np.ndarray:
    """A clip the models never saw: the quick profile's look, another seed."""
    from trajlab.data import build_dataset, load_dataset
    from trajlab.profiles import load_profile

    cfg = load_profile("quick").dataset.model_copy(update={"samples": 8, "seed": 4242})
    out = Path(tempfile.mkdtemp(prefix="trajlab-fresh-"))
    try:
        ds = load_dataset(build_dataset(cfg, out / "data"))
        return np.array(ds.train.clips[0])  # (8 samples leave the validation split empty)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def prometheus_targets(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://{url}/api/v1/targets", timeout=10) as resp:
        return json.loads(resp.read())["data"]["activeTargets"]


def test_compose_up_trains_serves_reports_and_cleans_up(stack: tuple[Compose, Path]) -> None:
    compose, reports = stack
    report_dir = wait_for_report(compose, reports)
    text = (report_dir / "PARALLEL_RESULTS_COMPARISON.md").read_text()
    for branch in ("b1", "b2", "b3", "b4"):
        assert branch in text
    assert "winner" in text.lower()
    assert (report_dir / "report.html").is_file()
    assert list(report_dir.glob("*.png")), "the report has no figures"

    # A fresh clip through the encoder's port on loopback.
    from trajlab.codec import array_to_clip
    from trajlab.common.v1 import common_pb2
    from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
    from trajlab.profiles import CLASS_NAMES

    with grpc.insecure_channel(compose.port("encoder", 50051)) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        served = {m.model.branch for m in stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=30).models}
        assert served == {"b1", "b2", "b3", "b4"}
        resp = stub.Classify(
            encoder_pb2.ClassifyRequest(model=common_pb2.ModelRef(branch="b1"), clip=array_to_clip(fresh_clip(), 8.0)),
            timeout=30,
        )
    assert resp.class_name in CLASS_NAMES
    assert abs(sum(resp.probabilities) - 1.0) < 1e-3

    # Prometheus (the shipped config) scrapes every service.
    targets = prometheus_targets(compose.port("prometheus", 9090))
    jobs = sorted(t["labels"]["job"] for t in targets)
    assert jobs == ["describer", "encoder", "prometheus", "reporter", "trainer", "trainer", "trainer", "trainer"]
    down = [t["scrapeUrl"] for t in targets if t["health"] != "up"]
    assert not down, f"targets down: {down}"
    branches = sorted(t["labels"].get("branch", "") for t in targets if t["labels"]["job"] == "trainer")
    assert branches == ["b1", "b2", "b3", "b4"]

    # Every container is still up (none crash-looping) and healthy where it has a check.
    for svc, state in compose.states().items():
        assert state.startswith("running"), (svc, state)

    # down -v leaves nothing of the project behind.
    compose.run("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300)
    assert _docker_ls("container") == []
    assert _docker_ls("network") == []
    assert _docker_ls("volume") == []
