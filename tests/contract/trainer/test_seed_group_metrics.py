"""A real seed group of two (``TRAJLAB_TRAINER_SEEDS=2``) shows both seeds on its one metrics port.

The group trains two seed runs of b4 on the tiny profile. Its metrics port (the container's
9100 in compose) is scraped as a user's Prometheus would: first directly, then by the real
Prometheus binary with the shipped compose config (deploy/prometheus/prometheus.yml, the
trainer job pointed at this group): every seed's series arrive, each labelled with its run
and seed, and the Training dashboard's branch variable lists both runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.prometheus_process import LocalPrometheus
from tests.unit.trainer import kit
from trajlab.clients.trainer import TrainerClient
from trajlab.runs import run_name, training_seeds

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow
EPOCHS = 2


def _free_run(n: int) -> int:
    """A port p with p .. p + n - 1 free on 127.0.0.1."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            p = int(first.getsockname()[1])
            held: list[socket.socket] = []
            try:
                for k in range(1, n):
                    s = socket.socket()
                    held.append(s)
                    s.bind(("127.0.0.1", p + k))
            except OSError:
                continue
            finally:
                for s in held:
                    s.close()
        return p
    raise RuntimeError(f"no {n} consecutive free ports")


class Group:
    """The seed group process, its runs, and where it serves."""

    def __init__(self, work: Path, data: Path) -> None:
        profile = kit.tiny_profile(epochs=EPOCHS)
        profile_yaml = kit.write_profile_yaml(work / "tiny.yaml", profile)
        self.runs = [run_name("b4", s) for s in training_seeds(profile.training.seed, 2)]
        self.port = _free_run(2)
        self.metrics_port = _free_run(3)  # the group's, then each seed's own (loopback)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TRAJLAB_TRAINER_SEEDS": "2",
            "TRAJLAB_TRAINER_HOST": "127.0.0.1",
            "TRAJLAB_TRAINER_PORT": str(self.port),
            "TRAJLAB_TRAINER_METRICS_HOST": "127.0.0.1",
            "TRAJLAB_TRAINER_METRICS_PORT": str(self.metrics_port),
            "TRAJLAB_TRAINER_BRANCH": "b4",
            "TRAJLAB_TRAINER_PROFILE": str(profile_yaml),
            "TRAJLAB_TRAINER_DATA_DIR": str(data),
            "TRAJLAB_TRAINER_RUN_DIR": str(work / "run"),
            "TRAJLAB_TRAINER_MODEL_REPO": str(work / "models"),
            "TRAJLAB_TRAINER_TEXT_CACHE_DIR": str(work / "text"),
            "TRAJLAB_TRAINER_AUTO_START": "true",
            "TRAJLAB_TRAINER_THREADS": "1",
            "TRAJLAB_TRAINER_GRACE_SECONDS": "2",
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "services.trainer"], env=env, cwd=work)

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode()

    def wait_done(self) -> None:
        """Until every run has trained to DONE (its gauges all set); one GetStatus each on the way."""
        for k, run in enumerate(self.runs):
            with TrainerClient(f"127.0.0.1:{self.port + k}", timeout=30) as client:
                client.wait_until_serving(timeout=180)
                final = list(client.watch_status(timeout=600))[-1]
                assert (final.branch, final.state) == (run, "done")
                client.get_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Iterator[Group]:
    g = Group(tmp_path_factory.mktemp("seed-metrics"), tiny_data)
    try:
        g.wait_done()
        yield g
    finally:
        g.stop()


def _series(text: str, family: str) -> list[dict[str, str]]:
    return [
        {**s.labels, "__value__": str(s.value)}
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
    ]


def test_the_groups_metrics_port_shows_every_seed_labelled_with_its_run_and_seed(group: Group) -> None:
    text = group.metrics_text()
    seeds = {run: run.rpartition("@s")[2] for run in group.runs}
    epochs = {s["run"]: s for s in _series(text, "trajlab_trainer_epoch")}
    assert set(epochs) == set(group.runs)
    for run, seed in seeds.items():
        assert (
            epochs[run]["seed"] == seed
            and epochs[run]["branch"] == run
            and epochs[run]["base_branch"] == "b4"
        )
        assert float(epochs[run]["__value__"]) == EPOCHS
    states = {
        (s["run"], s["trajlab_trainer_state"])
        for s in _series(text, "trajlab_trainer_state")
        if float(s["__value__"]) == 1
    }
    assert states == {(run, "done") for run in group.runs}
    # Each seed's own gRPC calls (the GetStatus above), apart: they carry the run too.
    calls = {
        s["run"] for s in _series(text, "trajlab_grpc_requests") if s.get("method", "").endswith("GetStatus")
    }
    assert calls == set(group.runs)
    up = {s["run"]: float(s["__value__"]) for s in _series(text, "trajlab_seed_group_child_up")}
    assert up == dict.fromkeys(group.runs, 1.0)


def compose_prometheus(binary: str, group: Group, work: Path) -> LocalPrometheus:
    """The real Prometheus binary with the shipped config's trainer job pointed at the group."""
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    # Above the group's 2 s per-child timeout, as compose's 5 s is.
    cfg["global"].update({"scrape_interval": "3s", "scrape_timeout": "3s"})
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "trainer"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{group.metrics_port}"], "labels": {"branch": "b4"}}]
    cfg["scrape_configs"] = [job]
    return LocalPrometheus(binary, cfg, work)


@pytest.mark.prometheus
def test_prometheus_with_the_compose_config_gets_every_seed_with_its_seed_label(
    group: Group, prometheus_bin: str, tmp_path: Path
) -> None:
    with compose_prometheus(prometheus_bin, group, tmp_path) as prom:
        result = prom.wait_for("trajlab_trainer_val_accuracy", 2)
        got = {(r["metric"]["run"], r["metric"]["seed"], r["metric"]["branch"]) for r in result}
        assert got == {(run, run.rpartition("@s")[2], run) for run in group.runs}
        assert all(r["metric"]["job"] == "trainer" for r in result)
        # The generic series (no branch of their own) of each seed, apart.
        procs = prom.wait_for('process_start_time_seconds{job="trainer"}', 2)
        assert {r["metric"]["run"] for r in procs} == set(group.runs)
        assert {
            s["seed"] for s in (r["metric"] for r in prom.wait_for("trajlab_seed_group_child_up == 1", 2))
        } == {run.rpartition("@s")[2] for run in group.runs}
        # Grafana's "branch" variable of the Training dashboard lists every seed run.
        dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "training.json").read_text())
        metric = dash["templating"]["list"][0]["definition"].removeprefix("label_values(").split(",")[0]
        assert set(group.runs) <= set(prom.api("label/branch/values", **{"match[]": metric}))
