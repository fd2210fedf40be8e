"""CLI commands of the describer: ``trajlab describe --points FILE`` and ``trajlab backends``.

FILE is a .npy array of positions (N, 3) or times and positions (N, 4: t, x, y, z),
or JSON: the same as nested lists, or an object with the request's fields
(``observed``, ``observed_times``, ``forecast``, ``forecast_times``, ``truth``,
``truth_times``, ``predicted_class``). Without times, point k is at t = k / fps.
With ``--observed N`` only the first N points are described and all of them are
the truth the equations are scored against (so the score covers extrapolation).

By default the command asks the describer service (``--target``); ``--local``
runs the same routing in this process, configured by the same
``TRAJLAB_DESCRIBER_*`` environment (no key, no TGI: the analytic fitter answers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

DEFAULT_TARGET = "127.0.0.1:50053"

_TARGET = typer.Option(
    None, "--target", help="Describer host:port (default: $TRAJLAB_DESCRIBER_TARGET or 127.0.0.1:50053)."
)
_LOCAL = typer.Option(
    False, "--local", help="Run the describer in this process instead of calling the service."
)
_JSON = typer.Option(False, "--json", help="Print one JSON object instead of text.")
_TIMEOUT = typer.Option(30.0, "--timeout", min=0.1, help="Deadline of the call, seconds.")


def _target(target: str | None) -> str:
    return target or os.environ.get("TRAJLAB_DESCRIBER_TARGET") or DEFAULT_TARGET


_EXPECTED = "a .npy array of (N, 3) or (N, 4) numbers, or a .json list of [x, y, z] or object"


def _read_points_file(path: Path) -> Any:
    """The file's content: a numeric ndarray (.npy, never unpickled) or parsed JSON; CliError otherwise."""
    import numpy as np

    from trajlab_cli.errors import CliError, readable_file

    readable_file(path, "--points", _EXPECTED)
    if path.suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError):
            # np.load refuses object arrays and non-.npy bytes alike (allow_pickle=False): never unpickled.
            raise CliError(f"--points {path}: not a numeric .npy array (expected {_EXPECTED})") from None
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "iuf":
            raise CliError(f"--points {path}: holds {data.dtype} values, expected numbers")
        return data
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(f"--points {path}: not valid JSON ({exc})") from None
    raise CliError(f"--points {path}: expected a .npy or .json file, got {path.suffix or 'no suffix'!r}")


def _numbers(value: Any, path: Path, key: str) -> Any:
    """``value`` as a float64 array; CliError naming the file and the field when it is not numbers."""
    import numpy as np

    from trajlab_cli.errors import CliError

    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CliError(
            f"--points {path}: {key!r} must be numbers (a list of [x, y, z] or of times)"
        ) from None
    want_points = not key.endswith("times")
    if want_points and (arr.ndim != 2 or arr.shape[1] != 3):
        raise CliError(f"--points {path}: {key!r} must be a list of [x, y, z], got shape {arr.shape}")
    if not want_points and arr.ndim != 1:
        raise CliError(f"--points {path}: {key!r} must be a flat list of times, got shape {arr.shape}")
    return arr


def load_points(path: Path, fps: float, observed: int) -> dict[str, Any]:
    """Request fields from a points file (see the module docstring); arrays as float64 numpy.

    A file that is missing, empty, not what its suffix says, or of the wrong shape or
    type raises CliError naming ``--points``, the file and what was expected.
    """
    import numpy as np

    from trajlab_cli.errors import CliError

    data = _read_points_file(path)
    fields: dict[str, Any] = {}
    if isinstance(data, dict):
        for key in ("observed", "observed_times", "forecast", "forecast_times", "truth", "truth_times"):
            if data.get(key) is not None:
                fields[key] = _numbers(data[key], path, key)
        if data.get("predicted_class"):
            fields["predicted_class"] = str(data["predicted_class"])
        if "observed" not in fields:
            raise CliError(f"--points {path}: a JSON object needs an 'observed' list of [x, y, z]")
    else:
        try:
            arr = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise CliError(f"--points {path}: expected numbers ({_EXPECTED})") from None
        if arr.ndim != 2 or arr.shape[1] not in (3, 4):
            raise CliError(f"--points {path}: expected (N, 3) or (N, 4) points, got shape {arr.shape}")
        times = arr[:, 0] if arr.shape[1] == 4 else np.arange(arr.shape[0]) / fps
        pts = arr[:, -3:]
        n = observed or arr.shape[0]
        fields = {"observed": pts[:n], "observed_times": times[:n], "truth": pts, "truth_times": times}
    if "observed_times" not in fields:
        fields["observed_times"] = np.arange(len(fields["observed"])) / fps
    if "forecast" in fields and "forecast_times" not in fields:
        t0 = fields["observed_times"][-1]
        fields["forecast_times"] = t0 + (np.arange(len(fields["forecast"])) + 1) / fps
    if "truth" in fields and "truth_times" not in fields:
        fields["truth_times"] = np.arange(len(fields["truth"])) / fps
    return fields


def _describe_local(fields: dict[str, Any], backend: str, branch: str, timeout: float) -> dict[str, Any]:
    """Same checks and routing as the service, in process; returns the client's result shape."""
    from services.describer.router import BackendRegistry, Router
    from services.describer.servicer import request_to_domain, result_to_proto
    from services.describer.settings import DescriberSettings
    from trajlab.clients.describer import describe_request, response_to_described
    from trajlab.config import load_settings
    from trajlab.errors import ConfigError

    settings = load_settings(DescriberSettings)
    try:
        branches = settings.branch_defaults(settings.file_backends())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    router = Router(BackendRegistry(settings, branches))
    req = describe_request(backend=backend, branch=branch, **fields)
    traj, truth, truth_t = request_to_domain(req)
    res = router.describe(
        traj, backend=backend, branch=branch, time_remaining=timeout, truth=truth, truth_times=truth_t
    )
    return response_to_described(result_to_proto(res)).to_dict()


def describe(
    points: Path = typer.Option(
        ..., "--points", "-p", help="A .npy or .json file of 3D points (see --help)."
    ),
    fps: float = typer.Option(8.0, "--fps", min=1e-6, help="Frames per second when the file has no times."),
    observed: int = typer.Option(
        0, "--observed", "-n", min=0, help="Describe only the first N points (0 = all)."
    ),
    predicted_class: str | None = typer.Option(
        None, "--class", help="The class a video model predicted: linear, circular, helical or parabolic."
    ),
    backend: str = typer.Option(
        "", "--backend", help="analytic, openai, openai:<model>, tgi:mistral, tgi:phi-2."
    ),
    branch: str = typer.Option("", "--branch", "-b", help="Use this branch's default backend, e.g. b1."),
    target: str | None = _TARGET,
    local: bool = _LOCAL,
    as_json: bool = _JSON,
    timeout: float = _TIMEOUT,
) -> None:
    """Equations x(t), y(t), z(t) and a plain-language description of a 3D trajectory."""
    fields = load_points(points, fps, observed)
    if predicted_class:
        fields["predicted_class"] = predicted_class
    if local:
        import logging

        if as_json:
            # stdout carries the JSON; the fallback (if any) is in it, so keep log lines out.
            logging.getLogger("services.describer").setLevel(logging.ERROR)
        out = _describe_local(fields, backend, branch, timeout)
    else:
        from trajlab.clients.describer import DescriberClient

        with DescriberClient(_target(target), timeout=timeout) as client:
            out = client.describe(backend=backend, branch=branch, **fields).to_dict()
    if as_json:
        typer.echo(json.dumps(out))
        return
    x, y, z = out["equations"]
    typer.echo(f"x(t) = {x}\ny(t) = {y}\nz(t) = {z}")
    typer.echo(out["description"])
    used = out["backend_used"] + (f" ({out['model']})" if out["model"] else "")
    typer.echo(f"backend: {used}, requested {out['backend_requested']}, {out['latency_ms']:.1f} ms")
    if out["fallback_used"]:
        typer.secho(f"fallback to analytic: {out['fallback_reason']}", fg=typer.colors.YELLOW)
    usage = out.get("usage")
    if usage:
        money = f", cost {usage['cost']:.4f}" if usage["cost"] is not None else ", not priced"
        typer.echo(
            f"language model: {usage['backend']}, {usage['attempts']} call(s), "
            f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens, "
            f"{usage['seconds']:.2f} s{money}"
        )
    score = out.get("score")
    if score:
        if score["parsed"] and score["normalized_rmse"] is not None:
            verdict = "accurate" if score["accurate"] else "not accurate"
            typer.echo(
                f"score: RMSE = {score['normalized_rmse']:.2%} of the extent ({verdict}; threshold 5 %)"
            )
        else:
            typer.echo(f"score: not accurate ({score['error']})")


def backends(
    target: str | None = _TARGET,
    local: bool = _LOCAL,
    as_json: bool = _JSON,
    timeout: float = _TIMEOUT,
) -> None:
    """List the describer's backends, their configuration and health, and each branch's default."""
    if local:
        from dataclasses import asdict

        from services.describer.router import BackendRegistry
        from services.describer.settings import DescriberSettings
        from trajlab.config import load_settings

        settings = load_settings(DescriberSettings)
        reg = BackendRegistry(settings, settings.file_backends())
        infos = [asdict(s) for s in reg.statuses()]
        defaults = reg.branch_defaults
    else:
        from trajlab.clients.describer import DescriberClient

        with DescriberClient(_target(target), timeout=timeout) as client:
            lst, defaults = client.list_backends()
        infos = [b.to_dict() for b in lst]
    if as_json:
        typer.echo(json.dumps({"backends": infos, "branch_defaults": defaults}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("backend", "kind", "model", "endpoint", "health", "failures", "detail"):
        table.add_column(col)
    for b in infos:
        table.add_row(
            b["name"],
            b["kind"],
            b["model"],
            b["endpoint"],
            b["health"],
            str(b["consecutive_failures"]),
            b["detail"],
        )
    Console().print(table)
    typer.echo("branch defaults: " + ", ".join(f"{k}={v}" for k, v in sorted(defaults.items())))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("describe")(describe)
    app.command("backends")(backends)
