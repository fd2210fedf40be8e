"""CLI commands of the pipeline: ``trajlab report`` and ``trajlab monitor`` (``trajlab run`` joins them here).

Each command is a plain function registered in ``register(app)``, so ``trajlab run``
can reuse ``print_report_summary`` and the monitor's table in-process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from services.reporter.model import ReportResult
    from trajlab.clients.reporter import Report


def _fmt_pct(v: float | None) -> str:
    return "missing" if v is None else f"{v * 100:.2f} %"


def _fmt_mae(v: float | None) -> str:
    # The RPC's SummaryRow marks a missing figure with a negative number.
    return "missing" if v is None or v < 0 else f"{v:.2f} %"


def print_report_summary(result: ReportResult | Report, console: Console | None = None) -> None:
    """Print where the report is, the summary table and the winner (works for in-process and RPC results)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="trajlab comparison", header_style="bold")
    for col in (
        "branch",
        "val accuracy",
        "test accuracy",
        "MAE % extent",
        "test MAE",
        "criteria",
        "equations",
        "missing",
    ):
        table.add_column(col)
    for r in result.summary:
        name = f"[bold green]{r.branch} (rule leader)[/]" if r.branch == result.winner else r.branch
        table.add_row(
            name,
            _fmt_pct(r.accuracy),
            _fmt_pct(r.served_accuracy),
            "missing" if r.forecast_mae_pct is None else f"{r.forecast_mae_pct:.2f} %",
            _fmt_mae(r.served_forecast_mae_pct),
            "[green]met[/]" if r.meets_criteria else "[red]not met[/]",
            _fmt_pct(r.equation_accuracy),
            r.missing_reason,
        )
    console.print(table)
    if result.verdict:
        console.print(f"[bold]Verdict:[/] {result.verdict}")
        console.print(result.verdict_reason, soft_wrap=False)
    console.print(f"[bold]Leader by the rule:[/] {result.winner or 'none'}; rule: {result.winner_rule}")
    console.print(result.justification, soft_wrap=False)
    missing = [m for m in result.missing]
    if missing:
        console.print(
            f"[yellow]{len(missing)} section(s) missing[/], e.g. "
            + "; ".join(
                f"{m.section}{' (' + m.branch + ')' if m.branch else ''}: {m.reason}" for m in missing[:3]
            )
        )
    console.print(f"Report: {result.markdown_path}")
    console.print(f"HTML:   {result.html_path}")


def report_command(
    reporter: str | None = typer.Option(
        None, "--reporter", help="Ask a running reporter service (host:port) instead of building in-process."
    ),
    trainers: str | None = typer.Option(
        None,
        "--trainers",
        help='Trainer targets, "b1=127.0.0.1:50052,b2=...". Default: TRAJLAB_REPORTER_TRAINERS.',
    ),
    runs_dir: str | None = typer.Option(
        None,
        "--runs-dir",
        help="Finished runs' stored results, no trainer needed: a run-dir base (path or s3://bucket/prefix) "
        "with <branch>/seed-<seed>/ runs. Default: TRAJLAB_REPORTER_RUNS_DIR.",
    ),
    runs: str | None = typer.Option(
        None, "--runs", help='With --runs-dir: only these runs, "b1@s0,b2@s0" (default: every run found).'
    ),
    encoder: str | None = typer.Option(None, "--encoder", help='Encoder target host:port ("" to skip).'),
    describer: str | None = typer.Option(
        None, "--describer", help='Describer target host:port ("" to skip).'
    ),
    prometheus_url: str | None = typer.Option(
        None, "--prometheus-url", help="Prometheus base URL (optional)."
    ),
    reports_dir: Path | None = typer.Option(None, "--reports-dir", help="Reports root (default ./reports)."),
    profile: str | None = typer.Option(None, "--profile", "-p", help="Profile of the validation clips."),
    data_dir: Path | None = typer.Option(None, "--data", help="Dataset cache (default ./data/<profile>)."),
    describe_samples: int | None = typer.Option(
        None, "--describe-samples", min=0, help="Samples per branch."
    ),
    winner_rule: str | None = typer.Option(
        None,
        "--winner-rule",
        help="accuracy_then_mae (default), mae_then_accuracy or served_accuracy_then_mae.",
    ),
    eval_max_clips: int | None = typer.Option(
        None, "--eval-max-clips", min=0, help="Validation clips per branch through the encoder (0 = all)."
    ),
    branches: list[str] | None = typer.Option(
        None, "--branch", "-b", help="Only these branches (repeatable)."
    ),
) -> None:
    """Build the comparison report (markdown, HTML, PNG figures) and print its summary."""
    if reporter:
        from trajlab.clients.reporter import ReporterClient

        with ReporterClient(reporter) as client:
            rep = client.build_report(
                branches=branches or None,
                describe_samples=describe_samples or 0,
                winner_rule=winner_rule or "",
            )
        print_report_summary(rep)
        return
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "trainers": trainers,
            "runs_dir": runs_dir,
            "runs": runs,
            "encoder_target": encoder,
            "describer_target": describer,
            "prometheus_url": prometheus_url,
            "reports_dir": reports_dir,
            "profile": profile,
            "data_dir": data_dir,
            "describe_samples": describe_samples,
            "winner_rule": winner_rule,
            "eval_max_clips": eval_max_clips,
        }.items()
        if v is not None
    }
    print_report_summary(_build_in_process(overrides, branches or None))


def _build_in_process(overrides: dict[str, Any], branches: list[str] | None) -> ReportResult:
    """Build the report here, with the reporter's settings (environment, then the options given)."""
    from services.reporter.build import build_report
    from services.reporter.settings import ReporterSettings
    from trajlab.config import load_settings
    from trajlab_cli.errors import writable_dir

    if "reports_dir" in overrides:
        writable_dir(overrides["reports_dir"], "--reports-dir")
    if "profile" in overrides:
        from trajlab.profiles import load_profile

        # A wrong --profile is bad input, not a report with missing sections.
        load_profile(overrides["profile"])
    settings = load_settings(ReporterSettings, **overrides)
    if not settings.trainer_targets() and settings.runs_dir is None:
        raise typer.BadParameter(
            'no trainers: give --trainers "b1=host:port,..." (TRAJLAB_REPORTER_TRAINERS) or --runs-dir '
            "DIR|s3://bucket/prefix (TRAJLAB_REPORTER_RUNS_DIR)"
        )
    sources = _report_sources(settings)
    try:
        return build_report(sources, settings, branches=branches)
    finally:
        sources.close()


def _report_sources(settings: Any) -> Any:
    """ReportSources from the settings; an unusable or empty --runs-dir is bad input."""
    from services.reporter.build import ReportSources
    from trajlab.store import StoreError

    try:
        sources = ReportSources.from_settings(settings)
    except StoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--runs-dir") from None
    if not sources.trainers:
        raise typer.BadParameter(
            f"no runs in {settings.runs_dir} (expected <runs-dir>/<branch>/seed-<seed>/results.json)",
            param_hint="--runs-dir",
        )
    return sources


def monitor_command(
    trainers: str | None = typer.Option(
        None,
        "--trainers",
        help='Trainer targets, "b1=127.0.0.1:50052,b2=...". Default: TRAJLAB_REPORTER_TRAINERS.',
    ),
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit (for scripts)."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Least seconds between status updates."),
    keep: bool = typer.Option(False, "--keep", help="Keep watching after every trainer finished."),
    seeds: int = typer.Option(
        0,
        "--seeds",
        min=0,
        max=16,
        envvar="TRAJLAB_REPORTER_TRAINER_SEEDS",
        help="Each trainer is a seed group of this many seeds (compose's TRAJLAB_SEEDS): one row per run "
        "b1@s0, b1@s1, ..., seed k at the target's port + k x --seed-port-step. 0: one run per target.",
    ),
    seed_port_step: int = typer.Option(
        1,
        "--seed-port-step",
        min=1,
        help="Port distance between a group's seeds: 1 inside compose's network or a cluster, "
        "10 for the ports compose publishes on the host (b1: 50061, 50071, ...).",
    ),
    profile: str = typer.Option(
        "quick",
        "--profile",
        "-p",
        envvar="TRAJLAB_REPORTER_PROFILE",
        help="The trainers' profile (its training.seed is a group's first seed).",
    ),
    runs_dir: str | None = typer.Option(
        None,
        "--runs-dir",
        help="Read the runs' status from their run directories (path or s3://bucket/prefix) instead of "
        "asking trainers: cluster runs without reaching the pods (re-read every --interval, at least 5 s).",
    ),
) -> None:
    """Live table of every trainer (state, epoch, loss, accuracy, MAE, clips/s, ETA), redrawn in place."""
    from rich.console import Console

    from services.reporter.monitor import Monitor, poll_once, render_table, run_live
    from services.reporter.settings import parse_targets

    if runs_dir is not None:
        _monitor_stored(runs_dir, once=once, interval=max(interval, 5.0), keep=keep)
        return
    spec = trainers if trainers is not None else os.environ.get("TRAJLAB_REPORTER_TRAINERS", "")
    try:
        targets = parse_targets(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--trainers") from None
    if not targets:
        raise typer.BadParameter('give --trainers "b1=host:port,..."', param_hint="--trainers")
    if seeds:
        targets = _seed_runs(targets, seeds, seed_port_step, profile)
    console = Console()
    if once:
        console.print(render_table(poll_once(targets)))
        return
    mon = Monitor(targets, min_interval_seconds=interval)
    mon.start()
    try:
        run_live(mon, console=console, exit_when_finished=not keep)
    finally:
        mon.stop()


def _seed_runs(targets: dict[str, str], seeds: int, port_step: int, profile: str) -> dict[str, str]:
    """{run: target} of every seed of every seed-group target (trajlab.runs.seed_group_targets)."""
    from trajlab.profiles import load_profile
    from trajlab.runs import expand_seed_groups, training_seeds

    group = training_seeds(load_profile(profile).training.seed, seeds)
    try:
        return expand_seed_groups(targets, group, port_step)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--trainers") from None


def _monitor_stored(runs_dir: str, *, once: bool, interval: float, keep: bool) -> None:
    """The monitor's table from the stored status of every run under runs_dir (one listing per poll)."""
    import time

    from rich.console import Console
    from rich.live import Live

    from services.reporter.monitor import FINISHED, render_table
    from services.reporter.sources.stored_runs import stored_run_sources, stored_views
    from trajlab.store import StoreError, parse_location

    try:
        location = parse_location(runs_dir)
        views = stored_views(stored_run_sources(location))
    except (StoreError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--runs-dir") from None
    if not views:
        raise typer.BadParameter(
            f"no runs in {runs_dir} (expected <runs-dir>/<branch>/seed-<seed>/)", param_hint="--runs-dir"
        )
    console = Console()
    if once:
        console.print(render_table(views))
        return
    with Live(render_table(views), console=console, transient=False) as live:
        try:
            while keep or not all(v.status is not None and v.status.state in FINISHED for v in views):
                time.sleep(interval)
                views = stored_views(stored_run_sources(location))
                live.update(render_table(views))
        except KeyboardInterrupt:
            pass


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app (``run`` is added here by its own function)."""
    app.command("report")(report_command)
    app.command("monitor")(monitor_command)
