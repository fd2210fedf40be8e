"""CLI: ``trajlab train`` runs one branch's training loop in the foreground, without the server.

Same loop as the trainer service (services.trainer.training.Trainer): it resumes
from the run directory's newest good checkpoint, shows a progress bar on a
terminal, and publishes the ONNX model to the model repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from services.trainer.training import RunConfig
    from trajlab.profiles import BranchConfig, Profile


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("train")(train)


def train(
    branch: str = typer.Option("b1", "--branch", "-b", help="Branch name from the branches file."),
    profile: str = typer.Option("quick", "--profile", "-p", help="Profile name (quick, seed) or YAML path."),
    # Locations are paths or s3://bucket/prefix (credentials from the environment; see README).
    data: str | None = typer.Option(
        None, "--data", help="Dataset cache dir or s3:// URL (default: ./data/<profile>)."
    ),
    run_dir: str | None = typer.Option(
        None, "--run-dir", help="Checkpoints/results, a dir or s3:// URL (default: ./runs/<branch>)."
    ),
    model_repo: str = typer.Option("models", "--model-repo", help="Model repository root or s3:// URL."),
    cache_dir: Path = typer.Option(
        Path("cache/store"), "--cache-dir", help="Local copies of s3:// locations."
    ),
    branches_file: Path | None = typer.Option(
        None, "--branches", help="Branches YAML (default: seed branches)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=0, help="torch threads (default: profile's)."),
    text_encoder: str = typer.Option(
        "auto", "--text-encoder", help="auto, minilm or open_clip:<arch>:<weights>."
    ),
    text_cache: Path = typer.Option(Path("cache/text"), "--text-cache", help="Class-embedding cache dir."),
    export: bool = typer.Option(True, "--export/--no-export", help="Export and publish the ONNX model."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Train one branch on a profile (resuming from a checkpoint if present), evaluate, export."""
    import json

    from rich.console import Console

    from services.trainer.branch import known_parts
    from services.trainer.training import Trainer, TrainingFailed
    from trajlab.errors import ConfigError
    from trajlab.profiles import load_branches, load_profile
    from trajlab_cli.errors import EXIT_FAILED, CliError

    branches = load_branches(branches_file, known=known_parts())
    if branch not in branches:
        raise ConfigError(f"--branch: unknown branch {branch!r}; known: {sorted(branches)}")
    prof = load_profile(profile)
    cfg = _run_config(
        branches[branch],
        prof,
        data=data,
        run_dir=run_dir if run_dir is not None else Path("runs") / branch,
        model_repo=model_repo,
        cache_dir=cache_dir,
        text_encoder=text_encoder,
        text_cache=text_cache,
        threads=threads,
        export=export,
    )
    try:
        results = Trainer(cfg).run()
    except TrainingFailed as exc:
        raise CliError(f"training failed: {exc}", EXIT_FAILED) from exc
    if json_out:
        typer.echo(json.dumps({k: v for k, v in results.items() if k != "history"}, indent=2))
        return
    _print_results(Console(), results, branch, branches[branch], prof.name)


def _run_config(
    branch: BranchConfig,
    prof: Profile,
    *,
    data: str | None,
    run_dir: str | Path,
    model_repo: str,
    cache_dir: Path,
    text_encoder: str,
    text_cache: Path,
    threads: int | None,
    export: bool,
) -> RunConfig:
    """The trainer's RunConfig from the options: every location checked (a local one writable)."""
    from services.trainer.rundir import resolve_run_paths
    from services.trainer.training import RunConfig
    from trajlab_cli.errors import writable_dir

    run_at = _location("--run-dir", run_dir)
    if isinstance(run_at, Path):
        writable_dir(run_at, "--run-dir")
    repo = _location("--model-repo", model_repo)
    if isinstance(repo, Path) and export:
        writable_dir(repo, "--model-repo")
    paths = resolve_run_paths(
        run_at,
        _location("--data", data if data is not None else Path("data") / prof.name),
        cache_dir=cache_dir,
        profile=prof,
    )
    return RunConfig(
        branch=branch,
        profile=prof,
        data_dir=paths.data_dir,
        data_source=paths.data_source,
        run_dir=paths.run_dir,
        on_saved=paths.on_saved,
        model_repo=repo,
        text_encoder=text_encoder,
        text_cache_dir=text_cache,
        threads=threads,
        publish=export,
    )


def _print_results(
    console: Console, results: dict[str, Any], name: str, branch: BranchConfig, profile: str
) -> None:
    """The validation table (the model beside the baselines) and the run's other figures."""
    from rich.table import Table

    table = Table(title=f"branch {name} on profile {profile} (validation, {results['samples']} clips)")
    table.add_column("predictor")
    table.add_column("sees")
    table.add_column("accuracy", justify="right")
    table.add_column("MAE (world)", justify="right")
    table.add_column("MAE % extent", justify="right")
    table.add_column("ADE", justify="right")
    table.add_column("FDE", justify="right")

    def fmt(v: float, spec: str) -> str:
        return "-" if v < 0 else format(v, spec)

    table.add_row(
        f"model ({branch.encoder}+{branch.enhancement})",
        "pixels",
        fmt(results["accuracy"], ".3f"),
        fmt(results["forecast_mae"], ".3f"),
        fmt(results["forecast_mae_pct"], ".2f"),
        fmt(results["ade"], ".3f"),
        fmt(results["fde"], ".3f"),
    )
    own = results.get("track", {}).get("baselines", [])
    rows = [(b, "true track") for b in results["baselines"]]
    rows += [(b, "model's track") for b in own]
    for b, seen in rows:
        table.add_row(
            b["name"],
            "-" if b["name"] == "chance" else seen,
            fmt(b["accuracy"], ".3f"),
            fmt(b["forecast_mae"], ".3f"),
            fmt(b["forecast_mae_pct"], ".2f"),
            fmt(b["ade"], ".3f"),
            fmt(b["fde"], ".3f"),
        )
    console.print(table)
    if "track" in results:
        console.print(
            "observed track (the model's 3D estimate of the frames it saw): "
            f"MAE {results['track']['observed_mae']:.3f} world units, "
            f"{results['track']['observed_mae_pct']:.2f} % of extent"
        )
        if results["track"].get("classifier_accuracy", -1) >= 0:
            console.print(
                "accuracy of the track classifier alone (the class from the track's shape): "
                f"{results['track']['classifier_accuracy']:.3f}"
            )
    if results.get("zero_shot_accuracy", -1) >= 0:
        console.print(
            f"zero-shot accuracy (nearest class description): {results['zero_shot_accuracy']:.3f} "
            f"with {results['text_encoder']}"
        )
    for w in results.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")
    if results.get("model_version"):
        console.print(f"published model version {results['model_version']} at {results.get('model_dir')}")


def _location(option: str, value: str | Path) -> Path | str:
    """A CLI location: an s3:// URL (validated) or a path; a bad URL is a ConfigError naming the option."""
    from trajlab.errors import ConfigError
    from trajlab.store import parse_location

    try:
        return parse_location(str(value))
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
