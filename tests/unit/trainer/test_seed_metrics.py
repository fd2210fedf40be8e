"""A seed group's one /metrics (services/trainer/seed_metrics.py): every run's series, labelled.

Children here are real prometheus_client registries shaped like a trainer's (branch-labelled
gauges, a state enum, the generic gRPC counter and histogram without a branch); their
expositions are merged and the result is read back with prometheus_client's own parsers, in
both formats Prometheus may ask for.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from services.trainer.seed_metrics import SeedGroupCollector, child_metrics_ports, merge_families


def trainer_like(run: str, epoch: int, rpcs: int) -> CollectorRegistry:
    """A registry with what a trainer child of run ``run`` exposes (names as the trainer's)."""
    reg = CollectorRegistry()
    Gauge("trajlab_trainer_epoch", "Epochs completed.", ["branch"], registry=reg).labels(run).set(epoch)
    Enum(
        "trajlab_trainer_state",
        "Where the training run is.",
        ["branch"],
        states=["running", "done"],
        registry=reg,
    ).labels(run).state("running")
    calls = Counter("trajlab_grpc_requests", "RPCs.", ["method", "code"], registry=reg)
    calls.labels("GetStatus", "OK").inc(rpcs)
    Histogram(
        "trajlab_grpc_request_seconds", "Latency.", ["method"], buckets=(0.1, 1.0), registry=reg
    ).labels("GetStatus").observe(0.05)
    return reg


def merged_registry(children: dict[str, CollectorRegistry]) -> CollectorRegistry:
    texts = {run: openmetrics_latest(reg).decode() for run, reg in children.items()}
    families = merge_families({run: list(parse_openmetrics(t)) for run, t in texts.items()})

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return families

    out = CollectorRegistry()
    out.register(Fixed())
    return out


def samples(text: str, parser=parse_text) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:  # type: ignore[no-untyped-def]
    return {(s.name, frozenset(s.labels.items())): s.value for f in parser(text) for s in f.samples}


def test_two_runs_merge_into_one_valid_exposition_with_both_runs_labelled() -> None:
    reg = merged_registry({"b1@s0": trainer_like("b1@s0", 3, 5), "b1@s1": trainer_like("b1@s1", 2, 7)})
    text = generate_latest(reg).decode()
    # One HELP and one TYPE per family, however many runs.
    for name in ("trajlab_trainer_epoch", "trajlab_grpc_requests_total", "trajlab_grpc_request_seconds"):
        assert text.count(f"# TYPE {name} ") == 1, name
        assert text.count(f"# HELP {name} ") == 1, name
    got = samples(text)
    for run, seed, epoch, rpcs in (("b1@s0", "0", 3, 5), ("b1@s1", "1", 2, 7)):
        run_l = {("run", run), ("seed", seed), ("base_branch", "b1"), ("branch", run)}
        assert got[("trajlab_trainer_epoch", frozenset(run_l))] == epoch
        # The gRPC series have no branch of their own: they get the run, as `trajlab run` does.
        assert (
            got[("trajlab_grpc_requests_total", frozenset(run_l | {("method", "GetStatus"), ("code", "OK")}))]
            == rpcs
        )
        bucket = frozenset(run_l | {("method", "GetStatus"), ("le", "0.1")})
        assert got[("trajlab_grpc_request_seconds_bucket", bucket)] == 1
        state = frozenset(run_l | {("trajlab_trainer_state", "running")})
        assert got[("trajlab_trainer_state", state)] == 1
    # Prometheus asks for OpenMetrics first: that exposition is valid too (strict parser) and says the same.
    om = openmetrics_latest(reg).decode()
    fams = {f.name: f for f in parse_openmetrics(om)}
    assert fams["trajlab_grpc_requests"].type == "counter"
    assert fams["trajlab_grpc_request_seconds"].type == "histogram"
    assert fams["trajlab_trainer_state"].type == "stateset"
    assert {s.labels["run"] for s in fams["trajlab_trainer_epoch"].samples} == {"b1@s0", "b1@s1"}


def test_a_label_the_child_set_itself_is_kept() -> None:
    reg = CollectorRegistry()
    Gauge("g", "A gauge.", ["branch", "seed"], registry=reg).labels("mine", "42").set(1)
    fams = merge_families({"b2@s3": list(parse_openmetrics(openmetrics_latest(reg).decode()))})
    (sample,) = fams[0].samples
    assert sample.labels == {"branch": "mine", "seed": "42", "run": "b2@s3", "base_branch": "b2"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_child() -> Iterator[int]:
    """A real /metrics endpoint of a trainer-like child on a loopback port."""
    srv, thread = start_http_server(0, addr="127.0.0.1", registry=trainer_like("b3@s0", 4, 1))
    yield int(srv.server_address[1])
    srv.shutdown()
    thread.join(timeout=5)


def test_a_child_that_does_not_answer_is_skipped_and_counted(live_child: int) -> None:
    dead = _free_port()  # nothing listens there
    collector = SeedGroupCollector(
        {"b3@s0": f"http://127.0.0.1:{live_child}/metrics", "b3@s1": f"http://127.0.0.1:{dead}/metrics"},
        timeout=1.0,
    )
    reg = CollectorRegistry()
    reg.register(collector)
    generate_latest(reg)
    got = samples(generate_latest(reg).decode())  # the second scrape
    live = {("run", "b3@s0"), ("seed", "0"), ("base_branch", "b3")}
    down = {("run", "b3@s1"), ("seed", "1"), ("base_branch", "b3")}
    assert got[("trajlab_trainer_epoch", frozenset(live | {("branch", "b3@s0")}))] == 4
    assert not [k for k in got if ("run", "b3@s1") in k[1] and not k[0].startswith("trajlab_seed_group_")]
    assert got[("trajlab_seed_group_child_up", frozenset(live))] == 1
    assert got[("trajlab_seed_group_child_up", frozenset(down))] == 0
    assert got[("trajlab_seed_group_child_scrape_failures_total", frozenset(down))] == 2
    assert got[("trajlab_seed_group_child_scrape_failures_total", frozenset(live))] == 0


def test_children_metrics_ports_sit_above_the_groups_own() -> None:
    assert child_metrics_ports(9100, 3) == [9101, 9102, 9103]
    assert child_metrics_ports(-1, 2) == [-1, -1]  # metrics off stay off
    free = child_metrics_ports(0, 3)  # any free port: real ones, distinct
    assert len(set(free)) == 3 and all(p > 0 for p in free)
