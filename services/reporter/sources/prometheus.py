"""Prometheus HTTP API client (instant and range queries) and the report figures read through it.

A query fails loudly with :class:`PrometheusError` (connection refused, timeout, HTTP
error, non-JSON body, or a JSON ``status`` other than ``"success"``), so the report can
show the section as missing with that reason instead of an empty curve.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import httpx

from services.reporter.model import CURVE_METRICS, Curves, Latency

log = logging.getLogger(__name__)

# Trainer gauges read for the training curves, by EpochMetrics field; labelled by branch.
TRAINER_EPOCH_METRIC = "trajlab_trainer_epoch"  # epochs completed
TRAINER_CURVE_METRICS: dict[str, str] = {
    "train_loss": "trajlab_trainer_train_loss",
    "val_loss": "trajlab_trainer_val_loss",
    "val_accuracy": "trajlab_trainer_val_accuracy",
    "forecast_mae_pct": "trajlab_trainer_forecast_mae_percent",
}


class PrometheusError(Exception):
    """A query could not be answered; the message says why, for the report."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant query."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: (unix seconds, value) points in time order."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class PrometheusClient:
    """Thin typed client of /api/v1/query and /api/v1/query_range."""

    def __init__(
        self, base_url: str, *, timeout_seconds: float = 5.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # transport: tests answer with canned bodies (httpx.MockTransport); None = the network.
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_seconds, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str]) -> dict:
        try:
            resp = self._client.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise PrometheusError(f"Prometheus at {self.base_url} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise PrometheusError(
                f"Prometheus at {self.base_url} unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        try:
            body = resp.json()
        except ValueError as exc:
            raise PrometheusError(
                f"Prometheus at {self.base_url} answered HTTP {resp.status_code} with a non-JSON body"
            ) from exc
        # The API answers errors (bad PromQL, timeouts) with a JSON body whose status is "error";
        # the HTTP code alone (400/422/503, or 200 behind some proxies) is not enough.
        if not isinstance(body, dict) or body.get("status") != "success":
            kind = body.get("errorType", "unknown") if isinstance(body, dict) else "unknown"
            msg = body.get("error", "") if isinstance(body, dict) else ""
            raise PrometheusError(f"Prometheus query failed (HTTP {resp.status_code}, {kind}): {msg}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError("Prometheus answered success without a data object")
        return data

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query; vector results only (scalars come back as one unlabelled sample)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        rtype = data.get("resultType")
        result = data.get("result", [])
        if rtype == "scalar":
            return [Sample({}, float(result[1]))]
        if rtype != "vector":
            raise PrometheusError(f"expected a vector result for {expr!r}, got {rtype}")
        return [Sample(dict(r.get("metric", {})), float(r["value"][1])) for r in result]

    def query_range(self, expr: str, start: float, end: float, step_seconds: float) -> list[Series]:
        """Range query over [start, end] (unix seconds) at the given step."""
        params = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{max(step_seconds, 0.001):.3f}",
        }
        data = self._get("/api/v1/query_range", params)
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"expected a matrix result for {expr!r}, got {data.get('resultType')}")
        return [
            Series(dict(r.get("metric", {})), [(float(t), float(v)) for t, v in r.get("values", [])])
            for r in data.get("result", [])
        ]

    def ready(self) -> None:
        """Raise PrometheusError unless the server answers a trivial query."""
        self.query("vector(1)")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class PrometheusSource:
    """Training curves and serving latency of the branches, read from Prometheus."""

    def __init__(
        self,
        client: PrometheusClient,
        *,
        latency_metric: str = "trajlab_encoder_inference_seconds",
        lookback_seconds: float = 24 * 3600.0,
    ) -> None:
        self.client = client
        self.latency_metric = latency_metric
        self.lookback_seconds = lookback_seconds  # how far back range queries look for a run

    def _raw(self, expr: str) -> list[Series]:
        """Every raw sample of ``expr`` in the lookback window, with its scrape timestamp.

        An instant query of a range vector returns the samples as scraped, so gauges
        scraped together share one timestamp exactly: no grid, no interpolation.
        """
        data = self.client._get("/api/v1/query", {"query": f"{expr}[{int(self.lookback_seconds)}s]"})
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"expected a matrix result for {expr!r}, got {data.get('resultType')}")
        return [
            Series(dict(r.get("metric", {})), [(float(t), float(v)) for t, v in r.get("values", [])])
            for r in data.get("result", [])
        ]

    def training_curves(self, branch: str) -> Curves:
        """Per-epoch curves of one branch from the trainer gauges.

        Each gauge sample is paired with the epoch gauge of the same scrape; the last
        sample seen while an epoch was the newest one is that epoch's value (the trainer
        sets the gauges when the epoch completes, so later samples of the same epoch are
        steadier than the first one). Raises PrometheusError when there is no data.
        """
        sel = f'{{branch="{_escape(branch)}"}}'
        epoch_series = self._raw(f"{TRAINER_EPOCH_METRIC}{sel}")
        if not epoch_series:
            raise PrometheusError(f"no {TRAINER_EPOCH_METRIC} series for branch {branch}")
        # A restarted trainer may leave several series (new instance label); merge them by time.
        epoch_at = {t: v for s in epoch_series for t, v in s.points}
        series: dict[str, dict[int, float]] = {}
        for key in CURVE_METRICS:
            name = TRAINER_CURVE_METRICS[key]
            per_epoch: dict[int, float] = {}
            for s in self._raw(f"{name}{sel}"):
                for t, v in s.points:
                    e = epoch_at.get(t)
                    if e is None or e < 1 or not math.isfinite(v):
                        continue
                    per_epoch[int(e)] = v
            series[key] = per_epoch
        epochs = sorted({e for per in series.values() for e in per})
        if not epochs:
            raise PrometheusError(f"Prometheus holds no completed epoch for branch {branch}")
        return Curves(
            epochs=epochs,
            series={k: [per.get(e, math.nan) for e in epochs] for k, per in series.items()},
            source="prometheus",
        )

    def request_count(self, branch: str) -> float | None:
        sel = f'{{branch="{_escape(branch)}"}}'
        samples = self.client.query(f"sum({self.latency_metric}_count{sel})")
        return samples[0].value if samples else None

    def latency(self, branch: str) -> Latency:
        """p50/p99 of the encoder's latency histogram for one branch, over every request since start.

        The cumulative buckets are used (not a rate over a window), so a report built long
        after the traffic still has figures; the answer says how many requests they cover.
        """
        sel = f'{{branch="{_escape(branch)}"}}'
        buckets = f"sum by (le) ({self.latency_metric}_bucket{sel})"
        out: dict[str, float | None] = {}
        for q in (0.5, 0.99):
            samples = self.client.query(f"histogram_quantile({q}, {buckets})")
            value = samples[0].value if samples else math.nan
            out[str(q)] = value * 1000.0 if math.isfinite(value) else None
        count = self.request_count(branch)
        if out["0.5"] is None or not count:
            raise PrometheusError(
                f"no {self.latency_metric} observations for branch {branch} in Prometheus "
                "(not scraped yet, or the encoder is not a scrape target)"
            )
        return Latency(
            p50_ms=out["0.5"],
            p99_ms=out["0.99"],
            requests=count,
            source=f"prometheus {self.latency_metric} (histogram, since encoder start)",
        )
