"""CLI commands of the encoder: ``trajlab classify CLIP``, ``trajlab forecast CLIP``, ``trajlab models``.

CLIP is a .npy/.npz array, a folder of PNG frames, or a GIF/MP4 video
(see ``trajlab.clipio``) of any size, length and frame rate: it is fitted to the served
model's input (``trajlab.clipadapt``: resized, resampled to the model's fps, its last
window kept or padded) and what was done is said on stderr (``adapted`` in ``--json``).
``--strict`` sends the clip as it is, and the server refuses another shape with the
expected one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import typer

DEFAULT_TARGET = "127.0.0.1:50051"

_TARGET = typer.Option(
    None,
    "--target",
    help="Encoder host:port (default: $TRAJLAB_ENCODER_TARGET or 127.0.0.1:50051).",
)
_BRANCH = typer.Option("b1", "--branch", "-b", help="Model branch, e.g. b1.")
_VERSION = typer.Option(0, "--version", "-v", min=0, help="Model version; 0 = the newest loaded.")
_JSON = typer.Option(False, "--json", help="Print one JSON object instead of a table.")
_TIMEOUT = typer.Option(30.0, "--timeout", min=0.1, help="Deadline of the call, seconds.")
_KEY = typer.Option(None, "--key", help="Array name inside an .npz (default: clip, clips, frames or video).")
_INDEX = typer.Option(0, "--index", min=0, help="Which clip of a stack of clips (N, T, H, W, C).")
_STRICT = typer.Option(
    False, "--strict", help="Send the clip as it is: refuse, rather than resize or resample, another shape."
)
_FPS = typer.Option(
    0.0, "--fps", min=0.0, help="Frames per second of the clip (default: the file's, else the model's)."
)


def _target(target: str | None) -> str:
    return target or os.environ.get("TRAJLAB_ENCODER_TARGET") or DEFAULT_TARGET


def _call(target: str, fn: Any) -> Any:
    """Run fn(client); a gRPC failure reaches the CLI's one error handler (trajlab_cli.errors)."""
    from trajlab.clients.encoder import EncoderClient

    with EncoderClient(target) as client:
        return fn(client)


_CLIP_EXPECTED = "a .npy/.npz array, a folder of PNG frames, or a .gif/.mp4 video"


def _load(clip: Path, key: str | None, index: int, fps: float) -> tuple[Any, float]:
    """The clip in the file and its fps; CliError naming CLIP, the file and what was expected."""
    from trajlab.clipio import load_clip
    from trajlab.errors import InvalidClip
    from trajlab_cli.errors import CliError

    if not clip.exists():
        raise CliError(f"CLIP {clip}: no such file or folder (expected {_CLIP_EXPECTED})")
    if clip.is_file() and clip.stat().st_size == 0:
        raise CliError(f"CLIP {clip}: the file is empty (expected {_CLIP_EXPECTED})")
    try:
        arr, file_fps = load_clip(clip, key=key, index=index)
    except EOFError:
        raise CliError(f"CLIP {clip}: the file ends early (expected {_CLIP_EXPECTED})") from None
    except InvalidClip as exc:
        if "pickle" in str(exc):  # np.load's advice to unpickle is not one to give: say what it is
            raise CliError(f"CLIP {clip}: not a numeric array (expected {_CLIP_EXPECTED})") from None
        raise CliError(str(exc) if str(clip) in str(exc) else f"CLIP {clip}: {exc}") from None
    return arr, (fps or file_fps)


def _prepare(
    client: Any, clip: Path, arr: Any, rate: float, branch: str, version: int, strict: bool, say: bool
) -> tuple[Any, float, list[str]]:
    """The clip to send, its fps and what was done to it (nothing with ``strict``); ``say``
    prints each step on stderr (``--json`` carries them in its ``adapted`` field instead)."""
    if strict:
        return arr, rate, []
    from trajlab.clipadapt import adapt_clip, target_of

    info = client.model_info(branch, version)
    target = target_of(info.input_shape, info.metadata.get("fps") or 0.0)
    adapted = adapt_clip(arr, rate, target, source=str(clip))
    for note in adapted.notes if say else ():
        typer.secho(f"adapted: {note}", fg=typer.colors.YELLOW, err=True)
    return adapted.clip, adapted.fps, adapted.notes


def _send_clip(
    method: Literal["classify", "forecast"], clip: Path, target: str | None, branch: str, version: int,
    as_json: bool, timeout: float, key: str | None, index: int, fps: float, strict: bool,
) -> tuple[Any, Any] | None:  # fmt: skip
    """``classify`` and ``forecast``'s one path: the file loaded, the clip fitted to the model (or
    sent as it is with ``strict``), ``EncoderClient.<method>`` called. With ``as_json`` prints the
    one JSON object and returns None; else (the clip sent, the answer) for the caller's table."""
    source, rate = _load(clip, key, index, fps)

    def run(c: Any) -> Any:
        sent, sent_fps, notes = _prepare(c, clip, source, rate, branch, version, strict, not as_json)
        answer = getattr(c, method)(sent, branch=branch, version=version, fps=sent_fps, timeout=timeout)
        return sent, notes, answer

    arr, notes, res = _call(_target(target), run)
    if as_json:
        doc = {"clip": str(clip), "source_shape": list(source.shape), "shape": list(arr.shape)}
        typer.echo(json.dumps({**doc, "adapted": notes, **res.to_dict()}))
        return None
    return arr, res


def classify(
    clip: Path = typer.Argument(..., help="A .npy/.npz file, a folder of PNG frames, or a .gif/.mp4 video."),
    target: str | None = _TARGET,
    branch: str = _BRANCH,
    version: int = _VERSION,
    as_json: bool = _JSON,
    timeout: float = _TIMEOUT,
    key: str | None = _KEY,
    index: int = _INDEX,
    fps: float = _FPS,
    strict: bool = _STRICT,
) -> None:
    """Classify the motion in CLIP (linear, circular, helical, parabolic)."""
    sent = _send_clip("classify", clip, target, branch, version, as_json, timeout, key, index, fps, strict)
    if sent is None:  # --json: printed
        return
    arr, res = sent
    from rich.console import Console
    from rich.table import Table

    best = res.probabilities[res.class_name]
    typer.echo(f"{clip} {tuple(arr.shape)} -> {res.branch} v{res.version}: {res.class_name} ({best:.1%})")
    table = Table()
    table.add_column("class")
    table.add_column("probability", justify="right")
    table.add_column("")
    for name, p in res.probabilities.items():
        table.add_row(name, f"{p:.1%}", "█" * round(p * 30))
    Console().print(table)


def forecast(
    clip: Path = typer.Argument(..., help="A .npy/.npz file, a folder of PNG frames, or a .gif/.mp4 video."),
    target: str | None = _TARGET,
    branch: str = _BRANCH,
    version: int = _VERSION,
    as_json: bool = _JSON,
    timeout: float = _TIMEOUT,
    key: str | None = _KEY,
    index: int = _INDEX,
    fps: float = _FPS,
    strict: bool = _STRICT,
) -> None:
    """Forecast the object's 3D positions (world units) in the frames after CLIP."""
    sent = _send_clip("forecast", clip, target, branch, version, as_json, timeout, key, index, fps, strict)
    if sent is None:  # --json: printed
        return
    arr, res = sent
    from rich.console import Console
    from rich.table import Table

    typer.echo(f"{clip} {tuple(arr.shape)} -> {res.branch} v{res.version}: forecast (world units)")
    table = Table()
    for col in ("frame", "t (s)", "x", "y", "z"):
        table.add_column(col, justify="right")
    first = arr.shape[0]
    for i, (t, p) in enumerate(zip(res.times, res.positions, strict=True)):
        table.add_row(str(first + i), f"{t:.3f}", *(f"{v:+.3f}" for v in p))
    Console().print(table)


def models(
    target: str | None = _TARGET,
    branch: str = typer.Option("", "--branch", "-b", help="Only this branch (default: all)."),
    as_json: bool = _JSON,
    timeout: float = _TIMEOUT,
) -> None:
    """List the model versions the encoder has loaded."""
    infos = _call(_target(target), lambda c: c.list_models(branch, timeout=timeout))
    if as_json:
        typer.echo(json.dumps([{k: v for k, v in m.to_dict().items() if k != "metadata"} for m in infos]))
        return
    from rich.console import Console
    from rich.table import Table

    typer.echo(f"models loaded by {_target(target)}:")
    table = Table()
    for col in ("branch", "version", "default", "input (T,H,W,C)", "provider", "sha256", "loaded at"):
        table.add_column(col)
    for m in infos:
        table.add_row(
            m.branch,
            str(m.version),
            "yes" if m.is_default else "",
            str(m.input_shape),
            m.execution_provider,
            m.sha256[:12],
            m.loaded_at,
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("classify")(classify)
    app.command("forecast")(forecast)
    app.command("models")(models)
