"""`trajlab monitor`: one row per trainer; an unreachable trainer is a row, not a crash."""

from __future__ import annotations

from typer.testing import CliRunner

from services.reporter.monitor import Monitor, render_table
from tests.contract.reporter import kit
from trajlab_cli import app


def test_monitor_once_shows_up_and_unreachable_trainers(world: kit.FakeWorld) -> None:
    up = world.trainers["b1"].target
    failed = world.trainers["b4"].target
    dead = f"127.0.0.1:{kit.free_port()}"
    res = CliRunner().invoke(
        app, ["monitor", "--once", "--trainers", f"b1={up},b9={dead},b4={failed}"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    lines = {ln.split("│")[1].strip(): ln for ln in res.output.splitlines() if ln.count("│") > 5}
    assert "done" in lines["b1"] and "5/5" in lines["b1"] and "87.5 %" in lines["b1"]
    assert "unreachable" in lines["b9"] and "connection refused" in lines["b9"].lower()
    assert "failed" in lines["b4"] and "loss became NaN" in lines["b4"]


def test_monitor_follows_watch_streams_and_stops(world: kit.FakeWorld) -> None:
    dead = f"127.0.0.1:{kit.free_port()}"
    mon = Monitor(
        {"b3": world.trainers["b3"].target, "b9": dead},
        min_interval_seconds=0.1,
        retry_seconds=0.2,
        connect_timeout_seconds=0.5,
    )
    mon.start()
    try:
        assert kit.wait_until(
            lambda: mon.snapshot()[0].status is not None and bool(mon.snapshot()[1].error != "connecting")
        )
        b3, b9 = mon.snapshot()
        assert b3.reachable and b3.finished
        assert not b9.reachable and b9.status is None
        table = render_table(mon.snapshot())
        assert table.row_count == 2
    finally:
        mon.stop(timeout=5)
    assert all(not t.is_alive() for t in mon._threads)


def test_live_view_redraws_until_every_trainer_finished(world: kit.FakeWorld) -> None:
    import io

    from rich.console import Console

    from services.reporter.monitor import run_live

    buf = io.StringIO()
    mon = Monitor({"b1": world.trainers["b1"].target}, min_interval_seconds=0.1).start()
    try:
        # Returns by itself once b1 (DONE) has been seen: no Ctrl-C needed.
        run_live(mon, console=Console(file=buf, force_terminal=True, width=150), refresh_seconds=0.05)
    finally:
        mon.stop()
    assert "b1" in buf.getvalue() and "done" in buf.getvalue()


def test_table_from_statuses_polled_elsewhere(world: kit.FakeWorld) -> None:
    import io

    from rich.console import Console

    from services.reporter.monitor import poll_once, views_from_statuses

    polled = poll_once({"b2": world.trainers["b2"].target})
    views = views_from_statuses({"b2": polled[0].status, "b7": None})
    buf = io.StringIO()
    Console(file=buf, width=160).print(render_table(views))
    out = buf.getvalue()
    assert "b2" in out and "done" in out and "b7" in out and "unreachable" in out


def _serve_at(port: int, spec: kit.BranchSpec, world: kit.FakeWorld):  # type: ignore[no-untyped-def]
    """A fake trainer on a given port (a seed group's seed k listens at a fixed offset); None if taken."""
    from concurrent import futures

    import grpc

    from trajlab.trainer.v1 import trainer_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trainer_pb2_grpc.add_TrainerServiceServicer_to_server(kit.FakeTrainer(spec, world.val), server)
    try:
        if server.add_insecure_port(f"127.0.0.1:{port}") != port:
            return None
    except RuntimeError:
        return None
    server.start()
    return server


def test_monitor_shows_every_seed_of_a_seed_group_at_its_published_port(world: kit.FakeWorld) -> None:
    # Compose's TRAJLAB_SEEDS=2 publishes trainer-b1's seeds on the host 10 ports apart.
    done, failed = kit.default_specs()[0], kit.default_specs()[3]
    for _ in range(20):
        base = kit.free_port()
        first = _serve_at(base, done, world)
        second = _serve_at(base + 10, failed, world) if first else None
        if second:
            break
        if first:
            first.stop(0)
    else:
        raise AssertionError("no two free ports 10 apart")
    try:
        res = CliRunner().invoke(
            app,
            ["monitor", "--once", "--trainers", f"b1=127.0.0.1:{base}", "--seeds", "3", "--seed-port-step", "10"],
            env={"COLUMNS": "200"},
        )
    finally:
        first.stop(0)
        second.stop(0)
    assert res.exit_code == 0, res.output
    lines = {ln.split("│")[1].strip(): ln for ln in res.output.splitlines() if ln.count("│") > 5}
    lines.pop("", None)  # a note folded onto a second line
    assert set(lines) == {"b1@s0", "b1@s1", "b1@s2"}
    assert "done" in lines["b1@s0"] and "87.5 %" in lines["b1@s0"]
    assert "failed" in lines["b1@s1"]  # seed 1 answered from base + 10
    assert "unreachable" in lines["b1@s2"] and f"127.0.0.1:{base + 20}" in res.output
