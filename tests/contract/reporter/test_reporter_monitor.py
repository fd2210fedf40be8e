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
