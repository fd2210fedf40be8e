"""The ``trajlab`` command line.

Logging is set up before any heavy import (torch, onnxruntime), and each command
imports what it needs inside its body, so ``trajlab --help`` and the dataset
commands stay fast. Command groups live in sibling modules that each expose
``register(app)``. Errors of every command become one line and an exit status in
one place, ``trajlab_cli.errors`` (the root group's class).
"""

from __future__ import annotations

import importlib

import typer

from trajlab.logging_setup import setup_logging
from trajlab_cli.errors import EPILOG, TrajlabGroup

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

app = typer.Typer(
    name="trajlab",
    cls=TrajlabGroup,
    help="Compare video models on clips of objects moving in 3D.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_MODULES = ("dataset", "train", "encoder", "describer", "explain", "pipeline", "run", "zoo", "stress")


@app.callback()
def _root(
    log_level: str = typer.Option(
        "WARNING", "--log-level", help="DEBUG, INFO, WARNING or ERROR; DEBUG also shows an error's traceback."
    ),
    json_logs: bool = typer.Option(False, "--json-logs", help="Log one JSON object per line."),
) -> None:
    if log_level.upper() not in _LEVELS:
        raise typer.BadParameter(
            f"expected one of {', '.join(_LEVELS)}, got {log_level!r}", param_hint="--log-level"
        )
    setup_logging(log_level, json_logs)


for _name in _MODULES:
    importlib.import_module(f"trajlab_cli.{_name}").register(app)


def main() -> None:
    """Entry point of the ``trajlab`` script (errors: see ``trajlab_cli.errors``)."""
    app()
