"""``trajlab run``: the whole comparison on this machine, no Docker, no network."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    profile: str = typer.Option("quick", "--profile", "-p", help="quick (minutes) or seed (full)."),
    branches: str = typer.Option(
        "", "--branches",
        help="A branches YAML file (every branch in it), or comma-separated names of the seed branches "
        "(b1-b4); default all seed branches.",
    ),
    root: Path = typer.Option(Path("."), "--root", help="Where data/, models/, runs/ and reports/ go."),
    fresh: bool = typer.Option(False, "--fresh", help="Retrain from scratch, not resume."),
    prometheus: bool = typer.Option(True, "--prometheus/--no-prometheus", help="Use Prometheus if any."),
    threads: int = typer.Option(0, "--threads-per-trainer", help="Torch threads per trainer (0: profile's)."),
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        envvar="TRAJLAB_SEEDS",
        help="Training seeds per branch (runs b1@s0, b1@s1, ...); default: the profile's training.seeds.",
    ),
    ablate: str = typer.Option(
        "",
        "--ablate",
        help="Comma-separated ablations: 'perception' also trains each branch with the object-track "
        "perception off (runs b1-noperc@s0, ...), compared paired in the report.",
    ),
    stress: bool = typer.Option(
        True,
        "--stress/--no-stress",
        help="Also score the served models on every stress set (trajlab stress) for the report's "
        "robustness section ($TRAJLAB_REPORTER_STRESS_SETS picks the sets); under a minute on quick.",
    ),
) -> None:
    """Train the branches, serve them, describe their trajectories and write the comparison report."""
    from rich.console import Console
    from rich.live import Live

    from trajlab_cli.errors import writable_dir
    from trajlab_cli.runner import make_plan, run_pipeline
    from trajlab_cli.supervisor import ChildFailed

    writable_dir(root, "--root")
    # The reporter's own setting picks the sets; --no-stress turns them off whatever it says.
    stress_sets = os.environ.get("TRAJLAB_REPORTER_STRESS_SETS", "all") if stress else ""
    console = Console(stderr=True)
    as_file = Path(branches) if branches.endswith((".yaml", ".yml")) or Path(branches).is_file() else None
    plan = make_plan(
        profile,
        branches=None if as_file is not None else [b for b in branches.split(",") if b] or None,
        branches_file=as_file,
        root=root,
        use_prometheus=prometheus,
        threads_per_trainer=threads or None,
        seeds=seeds,
        ablations=[a.strip() for a in ablate.split(",") if a.strip()],
        stress_sets=stress_sets,
    )
    console.print(
        f"[bold]trajlab run[/] profile={plan.profile.name} branches={','.join(plan.branches)} "
        f"seeds={','.join(str(s) for s in plan.seeds)} "
        + (f"ablate={','.join(plan.ablations)} " if plan.ablations else "")
        + f"prometheus={'on' if plan.use_prometheus else 'off (not installed)'}\n"
        f"logs: {plan.log_dir}\nendpoints (for trajlab monitor/classify while it runs): {plan.endpoints_path}"
    )
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            outcome = run_pipeline(plan, fresh=fresh, on_status=lambda s: live.update(_live_table(s)))
    except ChildFailed as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every process started by this run was stopped[/]")
        raise typer.Exit(130) from None
    except TimeoutError as exc:
        console.print(f"[red]error:[/] {exc}; logs in {plan.log_dir}")
        raise typer.Exit(1) from None
    from trajlab_cli.pipeline import print_report_summary

    print_report_summary(outcome.report)
    if outcome.failed_branches:
        console.print(f"[red]failed runs:[/] {', '.join(outcome.failed_branches)}; see {plan.log_dir}")


def _live_table(views):  # type: ignore[no-untyped-def]
    from services.reporter.monitor import render_table

    return render_table(views)
