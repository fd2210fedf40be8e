"""Every Grafana panel's query returns series from a real Prometheus scraping real services.

Grafana cannot be installed here, so the check is on what Grafana would ask:
Prometheus (the Debian binary) is started with deploy/prometheus/prometheus.yml, its
targets rewritten to the real service processes started here (trainer on a tiny
profile, encoder on a tiny model, describer), traffic is sent through the generated
stubs, and then each panel's PromQL, with Grafana's variables filled in as Grafana
would ("All" branches, a rate window), must return at least one series with a number.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.prometheus_process import LocalPrometheus, free_port

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
RATE_WINDOW = "60s"  # stands in for $__rate_interval: 60 scrapes at the test's 1 s interval

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

# Tiny profile: a couple of epochs of a few clips, so the trainer reports real metrics in seconds.
TINY_PROFILE = {
    "name": "dash",
    "description": "dashboard test: tiny",
    "dataset": {
        "samples": 32,
        "val_fraction": 0.25,
        "seed": 0,
        "frames": 8,
        "horizon": 4,
        "height": 32,
        "width": 32,
        "fps": 8.0,
    },
    "training": {
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.002,
        "checkpoint_every": 1,
        "status_interval_seconds": 1,
        "threads": 1,
    },
}


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target of every panel."""
    out = []
    for f in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(f.read_text())
        for p in dash["panels"]:
            for t in p.get("targets", []):
                out.append((dash["title"], p["title"], t["expr"]))
    return out


def grafana_expand(expr: str) -> str:
    """Fill Grafana's variables the way Grafana does for "All" and the default interval."""
    return expr.replace("$branch", ".*").replace("$__rate_interval", RATE_WINDOW).replace("$__range", "5m")


class Service:
    """One service process started here (``python -m services.<svc>``) on free ports."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.metrics_port = free_port()
        prefix = f"TRAJLAB_{name.upper()}_"
        full = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}PORT": str(self.port),
            f"{prefix}METRICS_HOST": "127.0.0.1",
            f"{prefix}METRICS_PORT": str(self.metrics_port),
            **env,
        }
        self.log = log
        self._logf = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], cwd=cwd, env=full, stdout=self._logf, stderr=subprocess.STDOUT
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                with grpc.insecure_channel(self.target) as ch:
                    st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if st == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not SERVING in {timeout} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._logf.close()


def prometheus_config(targets: dict[str, list[str]], port: int) -> dict[str, Any]:
    """The project's Prometheus config, scraping this test's processes every second."""
    cfg = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    cfg["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    kept = []
    for job in cfg["scrape_configs"]:
        name = job["job_name"]
        if name == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        elif name in targets:
            # Keep the shipped labels (branch per trainer), point at this test's processes.
            sc = job["static_configs"][: len(targets[name])]
            for entry, target in zip(sc, targets[name], strict=True):
                entry["targets"] = [target]
            job["static_configs"] = sc
        else:
            continue  # a service this test does not start
        kept.append(job)
    cfg["scrape_configs"] = kept
    return cfg


@dataclasses.dataclass
class Stack:
    """Prometheus scraping the services, and the instant at which the panel queries are evaluated."""

    prom: LocalPrometheus
    eval_time: float  # seconds since the epoch


def drive_traffic(encoder: Service, describer: Service, trainer: Service) -> None:
    """What a user and the reporter do: classify clips (one bad), describe, ask for status."""
    from tests.contract.encoder import kit
    from trajlab.codec import array_to_clip
    from trajlab.common.v1 import common_pb2
    from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
    from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
    from trajlab.trainer.v1 import trainer_pb2, trainer_pb2_grpc

    with grpc.insecure_channel(encoder.target) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        ref = common_pb2.ModelRef(branch="b1")
        for i, clip in enumerate(kit.random_clips(6, seed=3)):
            stub.Classify(encoder_pb2.ClassifyRequest(model=ref, clip=array_to_clip(clip, kit.FPS)), timeout=10)
            stub.Forecast(encoder_pb2.ForecastRequest(model=ref, clip=array_to_clip(clip, kit.FPS)), timeout=10)
            if i % 2 == 0:
                with pytest.raises(grpc.RpcError):
                    stub.Classify(encoder_pb2.ClassifyRequest(model=ref, clip=common_pb2.Clip()), timeout=10)
    with grpc.insecure_channel(describer.target) as ch:
        stub = describer_pb2_grpc.DescriberServiceStub(ch)
        pts = [common_pb2.Point3(x=t, y=2 * t, z=1.0) for t in range(10)]
        times = [t / 8 for t in range(10)]
        for backend in ("analytic", "openai", "analytic"):
            stub.Describe(
                describer_pb2.DescribeRequest(observed=pts, observed_times=times, backend=backend), timeout=30
            )
    with grpc.insecure_channel(trainer.target) as ch:
        stub = trainer_pb2_grpc.TrainerServiceStub(ch)
        for _ in range(3):
            stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10)


@pytest.fixture(scope="module")
def stack(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.contract.encoder import kit

    work = tmp_path_factory.mktemp("dash")
    (work / "models").mkdir()
    kit.publish(work / "models", "b1", kit.export_tiny_model(work / "tiny.onnx", seed=0))
    (work / "dash.yaml").write_text(yaml.safe_dump(TINY_PROFILE))
    services: list[Service] = []
    prom: LocalPrometheus | None = None
    try:
        trainer = Service(
            "trainer",
            {
                "TRAJLAB_TRAINER_BRANCH": "b1",
                "TRAJLAB_TRAINER_PROFILE": str(work / "dash.yaml"),
                "TRAJLAB_TRAINER_AUTO_START": "true",
                "TRAJLAB_TRAINER_DATA_DIR": str(work / "data"),
                "TRAJLAB_TRAINER_MODEL_REPO": str(work / "trained"),
                "TRAJLAB_TRAINER_RUN_DIR": str(work / "runs" / "b1"),
                "TRAJLAB_TRAINER_TEXT_CACHE_DIR": str(work / "text"),
            },
            work,
            work / "trainer.log",
        )
        services.append(trainer)
        encoder = Service(
            "encoder",
            {"TRAJLAB_ENCODER_MODEL_REPO": str(work / "models"), "TRAJLAB_ENCODER_INTRA_OP_THREADS": "1"},
            work,
            work / "encoder.log",
        )
        services.append(encoder)
        describer = Service("describer", {"OPENAI_API_KEY": ""}, work, work / "describer.log")
        services.append(describer)
        for s in services:
            s.wait_serving()
        targets = {
            "trainer": [f"127.0.0.1:{trainer.metrics_port}"],
            "encoder": [f"127.0.0.1:{encoder.metrics_port}"],
            "describer": [f"127.0.0.1:{describer.metrics_port}"],
        }
        port = free_port()
        prom = LocalPrometheus(prometheus_bin, prometheus_config(targets, port), work, port=port)
        prom.wait_targets_up(4)
        # Two rounds of traffic, each seen by Prometheus before the next: labelled series
        # appear at their first call, and rate() needs an increase between two samples.
        drive_traffic(encoder, describer, trainer)
        wait_scraped(prom, "sum(trajlab_encoder_requests_total)", 15)
        wait_scraped(prom, "sum(trajlab_describer_requests_total)", 3)
        wait_trained(prom)
        drive_traffic(encoder, describer, trainer)
        # Every query is then evaluated at one instant just after the second round, so a
        # busy machine running the tests slowly cannot slide the traffic out of the window.
        wait_scraped(prom, "sum(trajlab_encoder_requests_total)", 30)
        wait_scraped(prom, "sum(trajlab_describer_requests_total)", 6)
        time.sleep(2.5)
        yield Stack(prom, time.time())
    finally:
        if prom is not None:
            prom.stop()
        for s in services:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


def wait_scraped(prom: LocalPrometheus, query: str, at_least: float, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = prom.query(query)
        if result and float(result[0]["value"][1]) >= at_least:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape {query} >= {at_least} in {timeout} s")


def wait_trained(prom: LocalPrometheus, timeout: float = 300.0) -> None:
    """Until the trainer has finished an epoch (validation metrics exist) and Prometheus has them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prom.query('trajlab_trainer_epoch{branch="b1"} >= 1'):
            return
        time.sleep(1)
    raise AssertionError("the trainer reported no finished epoch")


QUERIES = panel_queries()


def test_dashboards_are_generated_from_their_source() -> None:
    sys.path.insert(0, str(REPO / "deploy" / "grafana"))
    try:
        import dashboards  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    for name in dashboards.DASHBOARDS:
        assert (DASHBOARDS / name).read_text() == dashboards.render(name), f"run python deploy/grafana/dashboards.py ({name})"
    titles = {json.loads(f.read_text())["title"] for f in DASHBOARDS.glob("*.json")}
    assert titles == {"Training", "Serving"}


@pytest.mark.parametrize(("dashboard", "title", "expr"), QUERIES, ids=[f"{d}:{t}:{e[:24]}" for d, t, e in QUERIES])
def test_every_panel_query_returns_series(stack: Stack, dashboard: str, title: str, expr: str) -> None:
    result = stack.prom.api("query", query=grafana_expand(expr), time=f"{stack.eval_time:.3f}")["result"]
    assert result, f"{dashboard} / {title}: no series for {grafana_expand(expr)}"
    values = [float(r["value"][1]) for r in result]
    assert any(math.isfinite(v) for v in values), f"{dashboard} / {title}: only NaN/Inf ({values})"


def test_the_branch_variable_lists_the_trained_branch(stack: Stack) -> None:
    for f in DASHBOARDS.glob("*.json"):
        var = json.loads(f.read_text())["templating"]["list"][0]
        metric = var["definition"].removeprefix("label_values(").split(",")[0]
        assert "b1" in stack.prom.api("label/branch/values", **{"match[]": metric}), f.name
