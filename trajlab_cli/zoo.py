"""``trajlab zoo``: every registered video encoder, what it costs and what it can do.

One row per encoder built at the profile's clip size: where it comes from, parameters,
forward FLOPs per clip, whether the ONNX export passes the parity check (a branch with
an encoder that fails it is refused) and whether the track perception can attach.
``--json`` prints the same as a list of objects.
"""

from __future__ import annotations

import json

import typer


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def zoo(
    profile: str = typer.Option("quick", "--profile", help="Profile whose clip size the encoders use."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    parity: bool = typer.Option(
        True, "--parity/--no-parity", help="Export each encoder and check ONNX Runtime against PyTorch."
    ),
    encoder: list[str] = typer.Option(
        [], "--encoder", "-e", help="Only these encoders (repeatable); default: all registered."
    ),
    in_channels: int = typer.Option(3, "--in-channels", min=1, help="Channels of the encoder's input clip."),
    threads: int = typer.Option(2, "--threads", min=1, help="Torch CPU threads."),
) -> None:
    """List the model zoo's encoders: origin, parameters, FLOPs, ONNX parity, track perception."""
    import torch

    from services.trainer import zoo as zoo_lib
    from trajlab.profiles import load_profile

    torch.set_num_threads(threads)
    size = zoo_lib.input_size_for(load_profile(profile), in_channels=in_channels)
    registry = zoo_lib.load_encoders()
    from trajlab_cli.errors import CliError

    for name in encoder:
        if name not in registry:
            raise CliError(f"--encoder: unknown {name!r}; registered: {', '.join(registry.names())}")
    entries = zoo_lib.describe_all(size, parity=parity, names=encoder or None)
    if as_json:
        typer.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    _print_table(entries, profile, str(size))


def _print_table(entries: list, profile: str, size: str) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"trajlab zoo - {len(entries)} encoders at profile {profile} (clip C x T x H x W = {size})"
    table = Table(title=title)
    for col, justify in (("encoder", "left"), ("origin", "left"), ("params", "right"),
                         ("FLOPs/clip", "right"), ("out", "right"), ("ONNX parity", "left"),
                         ("track perception", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for e in entries:
        parity = "not checked" if e.onnx_parity is None else ("yes" if e.onnx_parity else "NO")
        table.add_row(
            e.name, e.origin, _human(e.params), _human(e.flops), str(e.out_dim),
            f"{parity} ({e.parity_detail})" if e.onnx_parity is not None else parity,
            f"{'yes' if e.perception else 'no'} ({e.perception_reason})",
        )
    Console(width=200).print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("zoo")(zoo)
