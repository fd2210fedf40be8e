"""The trainers' PodMonitor labels each run's series with run, seed and base_branch, as compose does.

On Kubernetes a trainer pod trains one run and labels its gauges branch=<run> (``b1@s2``).
The PodMonitor's metricRelabelings (deploy/k8s/components/servicemonitor/monitors.yaml) are
given, as prometheus-operator gives them, to the real Prometheus binary scraping a real
/metrics endpoint; the series it stores must carry the labels a compose seed group gives
(services/trainer/seed_metrics.py), and a branch with no seed must be left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tests.prometheus_process import LocalPrometheus

ROOT = Path(__file__).resolve().parents[2]
MONITORS = ROOT / "deploy" / "k8s" / "components" / "servicemonitor" / "monitors.yaml"
pytestmark = pytest.mark.prometheus
OPERATOR_FIELDS = {"sourceLabels": "source_labels", "targetLabel": "target_label"}  # the rest: same name



def podmonitor_relabelings() -> list[dict[str, Any]]:
    """The trainers' PodMonitor's metricRelabelings as Prometheus metric_relabel_configs."""
    (pm,) = [d for d in yaml.safe_load_all(MONITORS.read_text()) if d and d["kind"] == "PodMonitor"]
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    return [{OPERATOR_FIELDS.get(k, k): v for k, v in rule.items()} for rule in endpoint["metricRelabelings"]]


@pytest.fixture
def trainer_like() -> Iterator[int]:
    """A /metrics endpoint with a seed run's gauge, a plain branch's and a series without a branch."""
    reg = CollectorRegistry()
    epoch = Gauge("trajlab_trainer_epoch", "Epochs completed.", ["branch"], registry=reg)
    epoch.labels("b1-noperc@s12").set(3)
    epoch.labels("b2").set(1)
    Counter("trajlab_grpc_requests", "RPCs.", ["method"], registry=reg).labels("GetStatus").inc()
    srv, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    yield int(srv.server_address[1])
    srv.shutdown()
    thread.join(timeout=5)



def test_each_runs_series_get_run_seed_and_base_branch(
    prometheus_bin: str, trainer_like: int, tmp_path: Path
) -> None:
    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "trainer",
                "static_configs": [{"targets": [f"127.0.0.1:{trainer_like}"]}],
                "metric_relabel_configs": podmonitor_relabelings(),
            }
        ],
    }
    with LocalPrometheus(prometheus_bin, cfg, tmp_path) as prom:
        labels = {r["metric"]["branch"]: r["metric"] for r in prom.wait_for("trajlab_trainer_epoch", 2, 60)}
        assert set(labels) == {"b1-noperc@s12", "b2"}, prom.log_path.read_text()[-2000:]
        seeded = labels["b1-noperc@s12"]
        assert (seeded["run"], seeded["seed"], seeded["base_branch"]) == ("b1-noperc@s12", "12", "b1-noperc")
        assert not {"run", "seed", "base_branch"} & set(labels["b2"])  # no seed in the name: untouched
        (rpcs,) = prom.query("trajlab_grpc_requests_total")
        assert not {"run", "seed", "base_branch"} & set(rpcs["metric"])
