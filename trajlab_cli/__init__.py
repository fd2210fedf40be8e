"""The ``trajlab`` command line.

Logging is set up before any heavy import (torch, onnxruntime), and each command
imports what it needs inside its body, so ``trajlab --help`` and the dataset
commands stay fast. Command groups live in sibling modules that each expose
``register(app)``.
"""

from __future__ import annotations

import importlib

import typer

from trajlab.logging_setup import setup_logging

app = typer.Typer(
    name="trajlab",
    help="Compare video models on clips of objects moving in 3D.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_MODULES = ("dataset", "train", "encoder", "describer", "explain", "pipeline", "run", "zoo")


@app.callback()
def _root(
    log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
    json_logs: bool = typer.Option(False, "--json-logs", help="Log one JSON object per line."),
) -> None:
    setup_logging(log_level, json_logs)


for _name in _MODULES:
    importlib.import_module(f"trajlab_cli.{_name}").register(app)


def main() -> None:
    """Entry point of the ``trajlab`` script."""
    from trajlab.errors import ConfigError, TrajlabError

    try:
        app()
    except (ConfigError, TrajlabError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
