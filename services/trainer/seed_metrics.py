"""One /metrics for a seed group: the parent serves every seed run's metrics, labelled by run.

A seed group (services/trainer/seed_group.py) is one container with one metrics port (9100 in
compose), but N child trainers, each with its own /metrics. Prometheus scrapes the container's
port only, with no per-N configuration, so the group's parent listens there and answers each
scrape with its children's metrics merged: it scrapes every child's /metrics on loopback (in
parallel, with a short timeout), parses them (OpenMetrics, so counters, histograms, states and
infos keep their exact structure) and re-yields one family per name with every child's samples.

Each child's samples get the labels ``trajlab run`` gives a run's target (trajlab_cli/runner.py):
``run`` (``b1@s1``), ``seed`` (``1``), ``base_branch`` (``b1``), and ``branch`` = the run where the
sample has no branch of its own (the generic gRPC and process series); a label the child set
itself is kept. A child that does not answer (starting, restarting) is left out of that scrape
and shows in the group's own series: ``trajlab_seed_group_child_up`` (1 when the last scrape
of that run answered) and ``trajlab_seed_group_child_scrape_failures_total``.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from trajlab.runs import split_run_name

log = logging.getLogger("services.trainer.seed_metrics")

CHILD_HOST = "127.0.0.1"  # children's /metrics listen on loopback: only the parent scrapes them
SCRAPE_TIMEOUT_SECONDS = 2.0  # per child, all children at once; below compose's 5 s scrape_timeout


def child_metrics_ports(metrics_port: int, count: int) -> list[int]:
    """The metrics ports of a group's ``count`` children when the group serves on ``metrics_port``.

    A fixed port p: the group on p, seed k's child on p + 1 + k. 0 (any free port): a free
    loopback port each, chosen now. Negative (metrics off): off for every child too.
    """
    if metrics_port < 0:
        return [metrics_port] * count
    if metrics_port > 0:
        return [metrics_port + 1 + k for k in range(count)]
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind((CHILD_HOST, 0))
            port = int(s.getsockname()[1])
        if port not in ports:
            ports.append(port)
    return ports


def run_labels(run: str) -> dict[str, str]:
    """``"b1@s1"`` -> ``{"run": "b1@s1", "seed": "1", "base_branch": "b1"}`` (no seed: no ``seed``)."""
    base, seed = split_run_name(run)
    labels = {"run": run, "base_branch": base}
    if seed is not None:
        labels["seed"] = str(seed)
    return labels


def merge_families(children: Mapping[str, Iterable[Metric]]) -> list[Metric]:
    """{run: its parsed families} -> one family per name holding every run's samples, labelled.

    Families keep the first run's help text and type; a later run's family of the same name
    with another type is left out (logged), so the merged exposition stays valid.
    """
    merged: dict[str, Metric] = {}
    for run, families in children.items():
        extra = {**run_labels(run), "branch": run}
        for fam in families:
            out = merged.get(fam.name)
            if out is None:
                out = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            elif out.type != fam.type:
                log.warning(
                    "seed group metrics: %s is a %s in %s, a %s before: left out",
                    fam.name,
                    fam.type,
                    run,
                    out.type,
                )
                continue
            for s in fam.samples:
                out.add_sample(s.name, {**extra, **s.labels}, s.value, s.timestamp, s.exemplar)
    return list(merged.values())


def scrape(url: str, timeout: float) -> list[Metric]:
    """The families of one /metrics endpoint, asked for in OpenMetrics; raises on any failure."""
    req = urllib.request.Request(url, headers={"Accept": OPENMETRICS})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read().decode("utf-8")
    return list(text_string_to_metric_families(text))


class SeedGroupCollector:
    """A prometheus_client collector yielding every child's metrics (see the module doc)."""

    def __init__(self, children: Mapping[str, str], timeout: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        self.children = dict(children)  # {run: its /metrics URL}
        self.timeout = timeout
        self._up = dict.fromkeys(self.children, 0)
        self._failures = dict.fromkeys(self.children, 0)
        self._lock = threading.Lock()  # scrapes may overlap (a threading HTTP server)

    def describe(self) -> list[Metric]:
        return []  # nothing to scrape when the registry registers it

    def _try(self, run: str) -> list[Metric] | None:
        try:
            return scrape(self.children[run], self.timeout)
        except (OSError, ValueError) as exc:  # a child down, mid-restart or mid-write: counted
            log.debug("seed group metrics: %s did not answer: %s", run, exc)
            return None

    def collect(self) -> Iterator[Metric]:
        with ThreadPoolExecutor(max_workers=len(self.children)) as pool:
            answers = dict(zip(self.children, pool.map(self._try, self.children), strict=True))
        with self._lock:
            for run, fams in answers.items():
                self._up[run] = int(fams is not None)
                self._failures[run] += int(fams is None)
            up = GaugeMetricFamily(
                "trajlab_seed_group_child_up",
                "1 when the seed group's last scrape of this run answered.",
                labels=["run", "seed", "base_branch"],
            )
            failures = CounterMetricFamily(
                "trajlab_seed_group_child_scrape_failures",
                "Scrapes of this run's /metrics by its seed group that got no answer.",
                labels=["run", "seed", "base_branch"],
            )
            for run in self.children:
                labels = run_labels(run)
                values = [labels["run"], labels.get("seed", ""), labels["base_branch"]]
                up.add_metric(values, self._up[run])
                failures.add_metric(values, self._failures[run])
        yield from merge_families({r: f for r, f in answers.items() if f is not None})
        yield up
        yield failures


def serve_group_metrics(host: str, port: int, children: Mapping[str, int]) -> int:
    """Serve the merged /metrics of ``children`` ({run: its loopback metrics port}) on host:port.

    Returns the bound port (``port`` 0: a free one).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        SeedGroupCollector({r: f"http://{CHILD_HOST}:{p}/metrics" for r, p in children.items()})
    )
    srv, _thread = start_http_server(port, addr=host, registry=registry)
    bound = int(srv.server_address[1])
    log.info("seed group metrics (every run) on http://%s:%d/metrics", host, bound)
    return bound
