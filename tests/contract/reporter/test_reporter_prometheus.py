"""The reporter against a REAL Prometheus server scraping a real process that exposes trajlab metrics.

A prometheus_client HTTP server (in this process) exposes trainer gauges epoch by epoch
and an encoder latency histogram; Prometheus (Debian package, started here on a free
port with a generated config) scrapes it every second. The curves the reporter reads
back must equal what was exposed, and the report must take them from Prometheus.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

from services.reporter.build import build_report
from services.reporter.settings import ReporterSettings
from services.reporter.sources.prometheus import PrometheusClient, PrometheusSource
from tests.contract.reporter import kit
from tests.prometheus_process import LocalPrometheus
from trajlab.config import load_settings

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@pytest.fixture(scope="module")
def exporter() -> Iterator[tuple[int, CollectorRegistry]]:
    reg = CollectorRegistry()
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    yield int(server.server_address[1]), reg
    server.shutdown()


@pytest.fixture(scope="module")
def prometheus(
    prometheus_bin: str, exporter: tuple[int, CollectorRegistry], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port, _ = exporter
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "trajlab", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    with LocalPrometheus(prometheus_bin, config, tmp_path_factory.mktemp("prometheus")) as prom:
        prom.wait_ready()
        yield prom.url


def _scraped(client: PrometheusClient, expr: str, value: float) -> bool:
    try:
        got = client.query(expr)
    except Exception:
        return False
    return bool(got) and abs(got[0].value - value) < 1e-12


def test_curves_and_latency_come_from_prometheus_and_match(
    world: kit.FakeWorld, exporter: tuple[int, CollectorRegistry], prometheus: str, tmp_path: Path
) -> None:
    _, reg = exporter
    g = {
        name: Gauge(name, name, ["branch"], registry=reg)
        for name in (
            "trajlab_trainer_epoch",
            "trajlab_trainer_train_loss",
            "trajlab_trainer_val_loss",
            "trajlab_trainer_val_accuracy",
            "trajlab_trainer_forecast_mae_percent",
        )
    }
    lat = Histogram(
        "trajlab_encoder_inference_seconds",
        "latency",
        ["branch"],
        registry=reg,
        buckets=(0.001, 0.002, 0.005, 0.01, 0.05, 0.1),
    )
    client = PrometheusClient(prometheus, timeout_seconds=5)
    # Expose b1's real history epoch by epoch, as the trainer's gauges would, waiting for a scrape each time.
    history = kit.FakeTrainer(world.specs[0], world.val).history
    for e in history:
        g["trajlab_trainer_train_loss"].labels("b1").set(e.train_loss)
        g["trajlab_trainer_val_loss"].labels("b1").set(e.val_loss)
        g["trajlab_trainer_val_accuracy"].labels("b1").set(e.val_accuracy)
        g["trajlab_trainer_forecast_mae_percent"].labels("b1").set(e.forecast_mae_pct)
        g["trajlab_trainer_epoch"].labels("b1").set(e.epoch)
        assert kit.wait_until(
            lambda e=e: (
                _scraped(client, 'trajlab_trainer_val_loss{branch="b1"}', e.val_loss)
                and _scraped(client, 'trajlab_trainer_epoch{branch="b1"}', e.epoch)
            ),
            15,
        )
    for _ in range(90):
        lat.labels("b1").observe(0.0015)  # 90 requests in the (0.001, 0.002] bucket
    for _ in range(10):
        lat.labels("b1").observe(0.03)  # 10 slow ones in (0.01, 0.05]
    assert kit.wait_until(
        lambda: _scraped(client, 'sum(trajlab_encoder_inference_seconds_count{branch="b1"})', 100), 15
    )

    source = PrometheusSource(client)
    curves = source.training_curves("b1")
    assert curves.source == "prometheus"
    assert curves.epochs == [e.epoch for e in history]
    assert curves.series["val_accuracy"] == pytest.approx([e.val_accuracy for e in history])
    assert curves.series["forecast_mae_pct"] == pytest.approx([e.forecast_mae_pct for e in history])
    assert curves.series["train_loss"] == pytest.approx([e.train_loss for e in history])

    latency = source.latency("b1")
    assert latency.requests == 100
    assert 1.0 < latency.p50_ms <= 2.0  # in the bucket holding the median
    assert 10.0 < latency.p99_ms <= 50.0

    # A range query on the same server sees the same epochs.
    end = time.time()
    series = client.query_range('trajlab_trainer_epoch{branch="b1"}', end - 120, end, 1)
    assert max(v for _, v in series[0].points) == history[-1].epoch

    # The report takes b1's curves from Prometheus (they match GetHistory: no disagreement note),
    # and b2's from GetHistory because Prometheus holds nothing for it.
    settings = load_settings(ReporterSettings, reports_dir=tmp_path, describe_samples=0)
    from services.reporter.build import ReportSources
    from services.reporter.sources.grpc_sources import TrainerSource

    sources = ReportSources(
        trainers={b: TrainerSource(b, t) for b, t in kit.iter_targets(world) if b in ("b1", "b2")},
        prometheus=source,
        validation=lambda: world.val,
    )
    result = build_report(sources, settings)
    doc = json.loads(result.json_path.read_text())
    assert doc["branches"]["b1"]["curves"]["source"] == "prometheus"
    assert doc["branches"]["b1"]["curves"]["series"]["val_loss"] == pytest.approx(
        [e.val_loss for e in history]
    )
    assert doc["branches"]["b2"]["curves"]["source"] == "trainer GetHistory"
    assert "no trajlab_trainer_epoch series for branch b2" in doc["branches"]["b2"]["curves"]["note"]
    assert not any("differ from the trainer's history" in n for n in doc["notes"])
    assert doc["branches"]["b1"]["latency"]["requests"] == 100
    md = result.markdown_path.read_text()
    assert "| b1 | prometheus | 5 |" in md
