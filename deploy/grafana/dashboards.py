"""Generate the Grafana dashboards "Training" and "Serving" as JSON files.

The JSON in deploy/grafana/dashboards/ is what Grafana loads (provisioning); this
script is its source, so the panels stay uniform and every query is written once:

    python deploy/grafana/dashboards.py          # rewrites training.json and serving.json

tests/docker/test_dashboards.py runs every panel's query against a real Prometheus
scraping the real services, and checks the JSON files match this script's output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "trajlab-prometheus"}
B = 'branch=~"$branch"'  # the branch template variable (multi-select, "All" = .*)
RATE = "$__rate_interval"


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    title: str,
    targets: list[dict[str, Any]],
    *,
    kind: str = "timeseries",
    unit: str = "short",
    desc: str = "",
    w: int = 12,
    h: int = 8,
    thresholds: list[tuple[str, float | None]] | None = None,
    minmax: tuple[float | None, float | None] = (None, None),
) -> dict[str, Any]:
    steps = [{"color": c, "value": v} for c, v in (thresholds or [("green", None)])]
    defaults: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if minmax[0] is not None:
        defaults["min"] = minmax[0]
    if minmax[1] is not None:
        defaults["max"] = minmax[1]
    if thresholds and kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": {"w": w, "h": h},
    }
    if kind in ("stat", "bargauge"):
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return p


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at Grafana's 24 columns; give each an id."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = i
        x += w
        row_h = max(row_h, h)
    return panels


def dashboard(
    uid: str, title: str, desc: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["trajlab"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": layout(panels),
    }


def branch_variable(metric: str) -> dict[str, Any]:
    return {
        "name": "branch",
        "label": "branch",
        "type": "query",
        "datasource": DS,
        "query": {"query": f"label_values({metric}, branch)", "refId": "branch"},
        "definition": f"label_values({metric}, branch)",
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
    }


def training() -> dict[str, Any]:
    panels = [
        panel(
            "Epoch progress",
            [target(f"trajlab_trainer_epoch{{{B}}} / trajlab_trainer_total_epochs{{{B}}}", "{{branch}}")],
            kind="bargauge",
            unit="percentunit",
            minmax=(0, 1),
            w=8,
            desc="Epochs completed over epochs planned, per branch.",
        ),
        panel(
            "State",
            [target(f"trajlab_trainer_state{{{B}}} == 1", "{{branch}}: {{trajlab_trainer_state}}")],
            kind="stat",
            w=8,
            desc="Where each branch's run is (pending, running, exporting, done, failed...).",
        ),
        panel(
            "Exported model version",
            [target(f"trajlab_trainer_model_version{{{B}}}", "{{branch}}")],
            kind="stat",
            w=8,
            desc="Newest version published to the model repository (0 before export).",
        ),
        panel(
            "Training loss",
            [target(f"trajlab_trainer_train_loss{{{B}}}", "{{branch}}")],
            desc="Mean training loss of the last epoch.",
        ),
        panel(
            "Validation loss",
            [target(f"trajlab_trainer_val_loss{{{B}}}", "{{branch}}")],
            desc="Validation loss of the last epoch.",
        ),
        panel(
            "Validation accuracy",
            [target(f"trajlab_trainer_val_accuracy{{{B}}}", "{{branch}}")],
            unit="percentunit",
            minmax=(0, 1),
            thresholds=[("red", None), ("green", 0.8)],
            desc="Classification accuracy on the validation split; the success line is 80 %.",
        ),
        panel(
            "Forecast MAE (% of extent)",
            [target(f"trajlab_trainer_forecast_mae_percent{{{B}}}", "{{branch}}")],
            unit="percent",
            thresholds=[("green", None), ("red", 20)],
            desc="Validation forecast MAE as a percentage of each trajectory's extent; success below 20 %.",
        ),
        panel(
            "Forecast MAE (world units)",
            [target(f"trajlab_trainer_forecast_mae{{{B}}}", "{{branch}}")],
            desc="Validation forecast MAE in world units.",
        ),
        panel(
            "Throughput",
            [target(f"trajlab_trainer_clips_per_second{{{B}}}", "{{branch}}")],
            unit="short",
            desc="Training clips per second.",
        ),
        panel(
            "Trainer RPCs",
            [
                target(
                    f'sum by (branch, method, code) (rate(trajlab_grpc_requests_total{{job="trainer", {B}}}[{RATE}]))',  # noqa: E501
                    "{{branch}} {{method}} {{code}}",
                )
            ],
            unit="reqps",
            w=24,
            desc="gRPC calls answered by the trainers (status, history, results).",
        ),
    ]
    return dashboard(
        "trajlab-training",
        "Training",
        "Per-branch training progress of the four trainers.",
        panels,
        [branch_variable("trajlab_trainer_epoch")],
    )


def serving() -> dict[str, Any]:
    def quantile(q: float, metric: str, by: str) -> str:
        return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{B}}}[{RATE}])))"

    panels = [
        panel(
            "Encoder requests/s by branch",
            [target(f"sum by (branch) (rate(trajlab_encoder_requests_total{{{B}}}[{RATE}]))", "{{branch}}")],
            unit="reqps",
            desc="Classify, Forecast and Analyze calls per second.",
        ),
        panel(
            "Encoder errors by code",
            [
                target(
                    f'sum by (branch, code) (rate(trajlab_encoder_requests_total{{{B}, code!="OK"}}[{RATE}]))',  # noqa: E501
                    "{{branch}} {{code}}",
                )
            ],
            unit="reqps",
            desc="Calls answered with an error status, per second (INVALID_ARGUMENT, NOT_FOUND, ...).",
        ),
        panel(
            "Encoder latency p50 / p99 by branch",
            [
                target(quantile(0.5, "trajlab_encoder_request_seconds", "branch"), "p50 {{branch}}", "A"),
                target(quantile(0.99, "trajlab_encoder_request_seconds", "branch"), "p99 {{branch}}", "B"),
            ],
            unit="s",
            desc="Whole-handler latency (decode, preprocess, inference).",
        ),
        panel(
            "Encoder model latency p50 / p99",
            [
                target(quantile(0.5, "trajlab_encoder_inference_seconds", "branch"), "p50 {{branch}}", "A"),
                target(quantile(0.99, "trajlab_encoder_inference_seconds", "branch"), "p99 {{branch}}", "B"),
            ],
            unit="s",
            desc="Batch queueing plus onnxruntime run, per request.",
        ),
        panel(
            "Models loaded",
            [target(f"trajlab_encoder_models_loaded{{{B}}}", "{{branch}}")],
            kind="stat",
            w=12,
            desc="Model versions loaded and serving per branch.",
        ),
        panel(
            "Default model version",
            [target(f"trajlab_encoder_default_version{{{B}}}", "{{branch}}")],
            kind="stat",
            w=12,
            desc="Version served when a request names none.",
        ),
        panel(
            "Describer requests by backend",
            [
                target(
                    "sum by (backend_requested, backend_used, outcome) (rate(trajlab_describer_requests_total[$__rate_interval]))",  # noqa: E501
                    "{{backend_requested}} → {{backend_used}} ({{outcome}})",
                )
            ],
            unit="reqps",
            desc="Describe calls by requested backend, the backend that answered, and outcome.",
        ),
        panel(
            "Describer fallbacks",
            [
                target(
                    "sum by (backend, reason) (rate(trajlab_describer_fallbacks_total[$__rate_interval]))",
                    "{{backend}}: {{reason}}",
                )
            ],
            unit="reqps",
            thresholds=[("green", None), ("orange", 0.000001)],
            desc="Answers given by the analytic backend instead of the requested one (no key, TGI down...).",
        ),
        panel(
            "Describer latency p50 / p99",
            [
                target(
                    "histogram_quantile(0.5, sum by (backend_requested, le) (rate(trajlab_describer_latency_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "p50 {{backend_requested}}",
                    "A",
                ),
                target(
                    "histogram_quantile(0.99, sum by (backend_requested, le) (rate(trajlab_describer_latency_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "p99 {{backend_requested}}",
                    "B",
                ),
            ],
            unit="s",
            desc="Describe latency including fallbacks and scoring.",
        ),
        panel(
            "gRPC calls by service and code",
            [
                target(
                    "sum by (job, method, code) (rate(trajlab_grpc_requests_total[$__rate_interval]))",
                    "{{job}} {{method}} {{code}}",
                )
            ],
            unit="reqps",
            desc="Every service's RPCs as counted by the shared interceptor.",
        ),
        panel(
            "gRPC p99 latency by service",
            [
                target(
                    "histogram_quantile(0.99, sum by (job, method, le) (rate(trajlab_grpc_request_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "{{job}} {{method}}",
                )
            ],
            unit="s",
            desc="Handler latency p99 of every service's RPCs.",
        ),
        panel(
            "Targets up",
            [target("up", "{{job}} {{instance}}")],
            kind="stat",
            w=24,
            thresholds=[("red", None), ("green", 1)],
            desc="1 when Prometheus scraped the target last time.",
        ),
    ]
    return dashboard(
        "trajlab-serving",
        "Serving",
        "Encoder and describer traffic, latency and errors.",
        panels,
        [branch_variable("trajlab_encoder_requests_total")],
    )


DASHBOARDS = {"training.json": training, "serving.json": serving}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (OUT / name).write_text(render(name), encoding="utf-8")
        sys.stdout.write(f"wrote {OUT / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
