"""``trajlab run``: the whole comparison on this machine, no Docker, no network."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    profile: str = typer.Option("quick", "--profile", "-p", help="quick (minutes) or seed (full)."),
    branches: str = typer.Option("", "--branches", help="Comma-separated branches; default all (b1-b4)."),
    root: Path = typer.Option(Path("."), "--root", help="Where data/, models/, runs/ and reports/ go."),
    fresh: bool = typer.Option(False, "--fresh", help="Retrain from scratch, not resume."),
    prometheus: bool = typer.Option(True, "--prometheus/--no-prometheus", help="Use Prometheus if any."),
    threads: int = typer.Option(0, "--threads-per-trainer", help="Torch threads per trainer (0: profile's)."),
) -> None:
    """Train the branches, serve them, describe their trajectories and write the comparison report."""
    from rich.console import Console
    from rich.live import Live

    from trajlab.runner import make_plan, run_pipeline
    from trajlab.supervisor import ChildFailed

    console = Console(stderr=True)
    plan = make_plan(
        profile,
        branches=[b for b in branches.split(",") if b] or None,
        root=root,
        use_prometheus=prometheus,
        threads_per_trainer=threads or None,
    )
    console.print(
        f"[bold]trajlab run[/] profile={plan.profile.name} branches={','.join(plan.branches)} "
        f"logs={plan.log_dir} prometheus={'on' if plan.use_prometheus else 'off (not installed)'}"
    )
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            outcome = run_pipeline(plan, fresh=fresh, on_status=lambda s: live.update(status_table(s)))
    except ChildFailed as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every process started by this run was stopped[/]")
        raise typer.Exit(130) from None
    except TimeoutError as exc:
        console.print(f"[red]error:[/] {exc}; logs in {plan.log_dir}")
        raise typer.Exit(1) from None
    _print_outcome(outcome)


def status_table(statuses: dict[str, object]):  # type: ignore[no-untyped-def]
    from rich.table import Table

    from trajlab.trainer.v1 import trainer_pb2

    t = Table(title="training", expand=False)
    for col in ("branch", "state", "epoch", "loss", "val acc", "MAE %", "clips/s", "ETA"):
        t.add_column(col, justify="right" if col not in ("branch", "state") else "left")
    for b, s in statuses.items():
        if s is None:
            t.add_row(b, "[red]unreachable[/]", *[""] * 6)
            continue
        state = trainer_pb2.TrainingState.Name(s.state).removeprefix("TRAINING_STATE_").lower()  # type: ignore[attr-defined]
        eta = f"{s.eta_seconds:.0f} s" if s.eta_seconds >= 0 else "-"  # type: ignore[attr-defined]
        t.add_row(
            b,
            state,
            f"{s.epoch}/{s.total_epochs}",  # type: ignore[attr-defined]
            f"{s.train_loss:.3f}" if s.epoch else "-",  # type: ignore[attr-defined]
            f"{100 * s.val_accuracy:.1f} %" if s.epoch else "-",  # type: ignore[attr-defined]
            f"{s.forecast_mae_pct:.1f}" if s.epoch else "-",  # type: ignore[attr-defined]
            f"{s.clips_per_second:.0f}",  # type: ignore[attr-defined]
            eta,
        )
    return t


def _print_outcome(outcome) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    out = Console()
    t = Table(title="comparison")
    for col in ("branch", "accuracy", "MAE % extent", "criteria", "equation acc.", "missing"):
        t.add_column(col)
    for row in outcome.summary:
        t.add_row(
            str(row["branch"]),
            f"{100 * row['accuracy']:.1f} %" if row["accuracy"] >= 0 else "missing",
            f"{row['forecast_mae_pct']:.1f}" if row["forecast_mae_pct"] >= 0 else "missing",
            "met" if row["meets_criteria"] else "not met",
            f"{100 * row['equation_accuracy']:.0f} %" if row["equation_accuracy"] >= 0 else "missing",
            str(row["missing_reason"]),
        )
    out.print(t)
    out.print(f"winner: [bold]{outcome.winner or 'none'}[/] ({outcome.winner_rule})")
    for section, reason in outcome.missing:
        out.print(f"[yellow]missing[/] {section}: {reason}")
    if outcome.failed_branches:
        out.print(f"[red]failed branches:[/] {', '.join(outcome.failed_branches)}")
    out.print(f"report: {outcome.markdown_path}")
