"""``trajlab stress --branch b1``: a served model on the stress sets, and its drop from the test split.

The clips come from the profile's dataset (built or reused in ``--data``) and its stress
sets (:mod:`trajlab.data.stress`, cached beside it); every clip goes through the encoder's
Analyze, and the scoring and intervals are the reporter's robustness section's
(:mod:`services.reporter.robustness`), so the command and the report agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from trajlab_cli.encoder import _target


def register(app: typer.Typer) -> None:
    app.command("stress")(stress)


def stress(
    branch: list[str] = typer.Option(
        ..., "--branch", "-b", help="A served branch (or run, e.g. b1@s0); repeat for several."
    ),
    target: str | None = typer.Option(
        None, "--target", help="Encoder host:port (default: $TRAJLAB_ENCODER_TARGET or 127.0.0.1:50051)."
    ),
    profile: str = typer.Option("quick", "--profile", "-p", help="Profile (quick, seed) or a YAML path."),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="The profile's dataset cache (default: data/<profile>); stress sets go beside it.",
    ),
    sets: str = typer.Option("all", "--sets", help="Comma-separated stress sets, or 'all'."),
    samples: int = typer.Option(160, "--samples", help="Clips per stress set (at most the test split's)."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Deadline of each Analyze call, seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Score served models on each stress set and the test split: accuracy, forecast MAE, drop (95 % CI)."""
    from trajlab.clients.encoder import EncoderClient
    from trajlab.data.stress import parse_sets, stress_samples
    from trajlab.profiles import load_profile
    from trajlab_cli.errors import CliError, writable_dir

    # Every input checked before anything is built or sent.
    names = parse_sets(sets)
    dup = sorted({b for b in branch if branch.count(b) > 1})
    if dup:
        raise CliError(f"--branch: {', '.join(dup)} given twice")
    prof = load_profile(profile)
    if prof.dataset.test_samples < 1:
        raise CliError(
            f"--profile {profile}: dataset.test_samples is 0, so there is no test split to compare with"
        )
    if samples < 1:
        raise CliError(f"--samples: must be >= 1, got {samples}")
    n = stress_samples(prof.dataset, samples)
    data_dir = writable_dir(data if data is not None else Path("data") / prof.name, "--data")

    with EncoderClient(_target(target), timeout=timeout) as enc:
        models = {m.branch: m for m in enc.list_models() if m.is_default}
        missing = [b for b in branch if b not in models]
        if missing:
            raise CliError(
                f"--branch: the encoder at {enc.target} serves no model of {', '.join(missing)} "
                f"(it serves: {', '.join(sorted(models)) or 'none'})"
            )
        d = prof.dataset
        clip = (d.frames, d.height, d.width, 3)
        for b in branch:
            if tuple(models[b].input_shape) != clip:
                raise CliError(
                    f"--profile {profile}: its clips are {clip} (frames, height, width, channels), but the "
                    f"served {b} takes {tuple(models[b].input_shape)}; give the profile {b} was trained on"
                )
        result = _score(enc, branch, prof.dataset, data_dir, names, n)
    if as_json:
        typer.echo(json.dumps({"profile": prof.name, "data": str(data_dir), **result.to_dict()}))
        return
    _print(result)


def _score(enc: Any, branches: list[str], cfg: Any, data_dir: Path, names: list[str], n: int) -> Any:
    from services.reporter.robustness import load_stress_sets, robustness, score_served
    from services.reporter.sources.validation import load_validation
    from trajlab.data import build_dataset

    build_dataset(cfg, data_dir)  # reuses a verified cache of the same config; refuses another config
    test = load_validation(data_dir, "test")
    stress_sets = load_stress_sets(data_dir, names, n, dataset_cfg=cfg)
    test_outcomes = {b: score_served(enc, b, test) for b in branches}
    return robustness(
        branches, test, test_outcomes, stress_sets, lambda b, clips: score_served(enc, b, clips)
    )


def _print(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from services.reporter.render.robustness import drop_text

    table = Table(title=f"served models on the stress sets ({result.samples} clips each) and the test split")
    for col in ("branch", "set", "clips", "accuracy", "drop (95 % CI)", "MAE % ext", "MAE rise (95 % CI)"):
        table.add_column(col, justify="left" if col in ("branch", "set") else "right")
    for b, (clips, acc, mae) in result.test.items():
        table.add_row(b, "test split", str(clips), f"{acc:.1%}", "", f"{mae:.2f}", "")
        for r in (r for r in result.rows if r.branch == b):
            table.add_row(
                "",
                r.set_name + ("" if r.paired else " *"),
                str(r.clips),
                f"{r.accuracy:.1%}",
                drop_text(r.accuracy_drop, frac=True),
                f"{r.mae_pct:.2f}",
                drop_text(r.mae_rise, frac=False),
            )
    Console().print(table)
    typer.echo("drop: test minus set, points (accuracy); rise: set minus test (MAE % of extent).")
    typer.echo("* compared as independent samples (other trajectories); the others clip by clip.")
    for key, why in result.missing.items():
        typer.secho(f"not scored: {key}: {why}", fg=typer.colors.YELLOW, err=True)
