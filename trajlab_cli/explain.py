"""``trajlab explain CLIP``: class, forecast, the model's own track and the equation of the motion.

The clip is analyzed by the encoder, fitted to the served model only when it must be
(``trajlab.analyze_fitted``: sent as it is first, so a clip already in the model's shape
costs one Analyze and no ListModels), and the model's observed track, forecast and class
go to the describer (see ``trajlab.explain`` for the chain and why it lives in the client).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from trajlab_cli.encoder import _BRANCH, _FPS, _INDEX, _KEY, _STRICT, _VERSION, _load, _target

DEFAULT_DESCRIBER = "127.0.0.1:50053"


def _camera(info: Any, notes: list[str]) -> Any:
    """The pinhole camera the model's clips were rendered with (its profile's field of view)."""
    from trajlab.data.camera import Camera
    from trajlab.errors import ConfigError
    from trajlab.profiles import load_profile

    _, height, width, _ = info.input_shape
    fov = 60.0
    try:
        fov = load_profile(str(info.metadata.get("profile", ""))).dataset.fov_degrees
    except (ConfigError, OSError, ValueError):
        notes.append(f"the model's profile is not known here: the image plane assumes a {fov:g} degree view")
    return Camera(width=width, height=height, fov_degrees=fov)


def explain(
    clip: Path = typer.Argument(..., help="A .npy/.npz file, a folder of PNG frames, or a .gif/.mp4 video."),
    target: str | None = typer.Option(
        None, "--target", help="Encoder host:port (default: $TRAJLAB_ENCODER_TARGET or 127.0.0.1:50051)."
    ),
    describer: str | None = typer.Option(
        None,
        "--describer",
        help="Describer host:port (default: $TRAJLAB_DESCRIBER_TARGET or 127.0.0.1:50053).",
    ),
    branch: str = _BRANCH,
    version: int = _VERSION,
    backend: str = typer.Option("", "--backend", help="Describer backend; default: the branch's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a figure (track, forecast, fitted curve; 3D and image plane) here."
    ),
    min_confidence: float = typer.Option(
        0.3, "--min-confidence", min=0.0, max=1.0, help="Leave out track frames less confident than this."
    ),
    timeout: float = typer.Option(
        30.0, "--timeout", min=0.1, help="Deadline of each call (Analyze, then Describe), seconds."
    ),
    key: str | None = _KEY,
    index: int = _INDEX,
    fps: float = _FPS,
    strict: bool = _STRICT,
) -> None:
    """Class, forecast, the model's own track and the equations x(t), y(t), z(t) of the motion in CLIP."""
    from trajlab.analyze_fitted import analyze_fitted
    from trajlab.clients.describer import DescriberClient
    from trajlab.clients.encoder import EncoderClient
    from trajlab.explain import describe_analysis
    from trajlab_cli.errors import writable_dir

    if plot is not None:
        writable_dir(plot.parent, "--plot")
    describer_target = describer or os.environ.get("TRAJLAB_DESCRIBER_TARGET") or DEFAULT_DESCRIBER
    # Each connection starts as soon as its channel exists and is made in gRPC's threads while
    # the next client is set up, the clip is read and (the describer's) Analyze runs.
    with EncoderClient(_target(target)) as enc:
        enc.connect()
        with DescriberClient(describer_target) as desc:
            desc.connect()
            source, rate = _load(clip, key, index, fps)
            fitted = analyze_fitted(
                enc,
                source,
                rate,
                branch=branch,
                version=version,
                strict=strict,
                timeout=timeout,
                source=str(clip),
            )
            for note in () if as_json else fitted.notes:
                typer.secho(f"adapted: {note}", fg=typer.colors.YELLOW, err=True)
            ex = describe_analysis(
                desc,
                fitted.analysis,
                analyze_ms=fitted.analyze_ms,
                branch=branch,
                backend=backend,
                source=str(clip),
                notes=fitted.notes,
                min_confidence=min_confidence,
                describe_timeout=timeout,
            )
        info = enc.model_info(ex.branch, ex.version) if plot is not None else None
    if plot is not None:
        from trajlab.explain_figure import save_figure

        save_figure(ex, plot, camera=_camera(info, ex.notes), last_frame=fitted.clip[-1])
    if as_json:
        typer.echo(json.dumps({**ex.to_dict(), "plot": str(plot) if plot else None}))
        return
    _print(ex, plot)


def _print(ex: Any, plot: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    d = ex.described
    best = ex.probabilities[ex.class_name]
    typer.echo(f"{ex.clip} -> {ex.branch} v{ex.version}: {ex.class_name} ({best:.1%})")
    typer.echo("  " + ", ".join(f"{k} {v:.1%}" for k, v in ex.probabilities.items()))
    table = Table(title=f"positions (world units); equations fitted to the {ex.fitted_on}")
    for col in ("", "t (s)", "x", "y", "z", "confidence"):
        table.add_column(col, justify="right")
    if ex.track is not None:
        conf = ex.track_confidence if ex.track_confidence is not None else [float("nan")] * len(ex.track)
        for t, p, c in zip(ex.track_times, ex.track, conf, strict=True):
            table.add_row("seen", f"{t:.3f}", *(f"{v:+.3f}" for v in p), f"{c:.2f}")
    for t, p in zip(ex.forecast_times, ex.forecast, strict=True):
        table.add_row("forecast", f"{t:.3f}", *(f"{v:+.3f}" for v in p), "")
    Console().print(table)
    x, y, z = d.equations
    typer.echo(f"x(t) = {x}\ny(t) = {y}\nz(t) = {z}")
    typer.echo(d.description)
    used = d.backend_used + (f" ({d.model})" if d.model else "")
    typer.echo(f"backend: {used}; Analyze {ex.analyze_ms:.0f} ms, Describe {ex.describe_ms:.0f} ms")
    if d.fallback_used:
        typer.secho(f"fallback to analytic: {d.fallback_reason}", fg=typer.colors.YELLOW)
    for note in ex.notes:
        if "track" in note or "view" in note:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    if plot is not None:
        typer.echo(f"figure: {plot}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("explain")(explain)
