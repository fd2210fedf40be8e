"""One place where the ``trajlab`` command line turns errors into one line and an exit status.

Every command runs inside :class:`TrajlabGroup`, the root group's class. An error a
user can cause or must be told about (a missing, unreadable or unwritable path, a
malformed file, an invalid value, an unreachable service, a gRPC status) becomes
one line ``error: ...`` on stderr and one of the exit statuses below; a traceback is
added only with ``--log-level DEBUG``. Anything else is a bug: it is reported as an
internal error on one line too, with the hint to rerun with ``--log-level DEBUG``.

Commands raise :class:`CliError` (or the library's typed errors) with a message that
names the file or option and what was expected; :func:`writable_dir` checks an
output folder up front, so a command fails before its work rather than after it.
"""

from __future__ import annotations

import errno
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException, UsageError

    NoArgsIsHelpError = type("NoArgsIsHelpError", (UsageError,), {})  # never raised there

EXIT_OK = 0
EXIT_FAILED = 1  # the work failed: a service unreachable or failing, training failed, disk full
EXIT_BAD_INPUT = 2  # the input is wrong: a path, a file's content, an option's value, a name
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

EPILOG = (
    "Exit status: 0 done; 1 the work failed (a service unreachable or failing, training failed); "
    "2 bad input (a missing, unreadable or unwritable path, a malformed file, an invalid value); "
    "130 interrupted (Ctrl-C). Errors are one line on stderr; --log-level DEBUG adds the traceback."
)

# OSError numbers that mean the user gave a path that cannot be used (rather than the machine failing).
_BAD_PATH_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EROFS,
    errno.ENAMETOOLONG,
    errno.EEXIST,
    errno.ENOTEMPTY,
    errno.ELOOP,
}
# gRPC status codes that mean the request was wrong (the rest: the service failed or is away).
_BAD_INPUT_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "OUT_OF_RANGE", "ALREADY_EXISTS"}
_UNREACHABLE_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


class CliError(Exception):
    """An error a command reports as it is: ``message`` (one line) and an exit ``status``."""

    def __init__(self, message: str, status: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.status = status


def one_line(text: str) -> str:
    """Collapse a multi-line message (pydantic, YAML, gRPC details) into one line."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _os_error(exc: OSError) -> tuple[int, str]:
    reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
    names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    text = f"{' -> '.join(names)}: {reason}" if names else str(exc) or reason
    if exc.errno == errno.EISDIR:
        text += " (expected a file)"
    elif exc.errno == errno.ENOTDIR:
        text += " (a part of the path is a file, expected a folder)"
    bad = exc.errno in _BAD_PATH_ERRNOS or exc.errno is None  # None: e.g. an unreadable image
    return (EXIT_BAD_INPUT if bad else EXIT_FAILED), text


def _option_in(argv: list[str], text: str) -> str | None:
    """The option of ``argv`` whose value (an address, say) appears in ``text``, e.g. ``--describer``."""
    for i, tok in enumerate(argv):
        if not tok.startswith("--"):
            continue
        opt, eq, value = tok.partition("=")
        if not eq and i + 1 < len(argv):
            value = argv[i + 1]
        for part in value.split(","):  # --trainers b1=host:port,b2=...
            addr = part.rpartition("=")[2] if "=" in part else part
            if addr and ":" in addr and addr in text:
                return opt
    return None


def _rpc_error(exc: Any, argv: list[str]) -> tuple[int, str]:
    code = exc.code()
    name = getattr(code, "name", str(code))
    details = exc.details() or ""
    text = f"{name}: {details}"
    if name in _UNREACHABLE_CODES:
        opt = _option_in(argv, details)
        if opt:
            text += f" (is the service running and reachable at the address given by {opt}?)"
        else:
            text += (
                " (is the service running at its default address? give another with the command's options)"
            )
    return (EXIT_BAD_INPUT if name in _BAD_INPUT_CODES else EXIT_FAILED), text


def classify(exc: BaseException, argv: list[str] | None = None) -> tuple[int, str] | None:
    """(exit status, message) of an expected error; None for anything else (a bug).

    ``argv`` (the command line after the root options) lets a gRPC error name the
    option that gave the address nothing answered at.
    """
    if isinstance(exc, CliError):
        return exc.status, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return EXIT_BAD_INPUT, exc.format_message() + hint
    if isinstance(exc, ClickException):  # e.g. a file option that cannot be opened
        return EXIT_BAD_INPUT, exc.format_message()
    if callable(getattr(exc, "code", None)) and callable(getattr(exc, "details", None)):
        return _rpc_error(exc, argv or [])  # grpc.RpcError, without importing grpc on the happy path
    from trajlab.errors import ConfigError, InvalidArgument, NotFound, TrajlabError

    if isinstance(exc, (InvalidArgument, NotFound, ConfigError)):
        return EXIT_BAD_INPUT, str(exc)
    if isinstance(exc, TrajlabError):
        return EXIT_FAILED, f"{exc.code.name}: {exc}"
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return EXIT_FAILED, str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, EOFError):
        return EXIT_BAD_INPUT, f"a file ends early ({exc or 'no data left'})"
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, "out of memory"
    module = type(exc).__module__.split(".")[0]
    if isinstance(exc, ValueError) or module == "yaml" or type(exc).__name__ == "BadZipFile":
        return EXIT_BAD_INPUT, str(exc) or type(exc).__name__
    return None


def report(exc: BaseException, *, debug: bool, argv: list[str] | None = None) -> int:
    """Print ``exc`` as one ``error:`` line on stderr (after its traceback when ``debug``); its status."""
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    known = classify(exc, argv)
    if known is None:
        status = EXIT_FAILED
        hint = "" if debug else "; rerun with --log-level DEBUG for the traceback"
        message = f"internal error (a bug, please report it): {type(exc).__name__}: {exc}{hint}"
    else:
        status, message = known
    typer.secho(f"error: {one_line(message)}", fg=typer.colors.RED, err=True)
    return status


def _debug(ctx: typer.Context) -> bool:
    return str(ctx.params.get("log_level") or "").upper() == "DEBUG"


class TrajlabGroup(TyperGroup):
    """The root group: every command's errors go through :func:`report` (see the module doc)."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        # The root's own options (e.g. --log-level without a value) fail here, before invoke.
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            raise typer.Exit(report(exc, debug=False)) from None

    def invoke(self, ctx: typer.Context) -> Any:
        # The command and its arguments, kept for the message (the group's invoke empties them).
        argv = [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, NoArgsIsHelpError, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # KeyboardInterrupt included: it gets 130
            raise typer.Exit(report(exc, debug=_debug(ctx), argv=argv)) from None


def writable_dir(path: Path, option: str) -> Path:
    """Create ``path`` (with parents) and check a file can be written in it; CliError naming ``option``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".trajlab-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise CliError(f"{option} {path}: cannot create or write this folder ({reason})") from None
    return path


def readable_file(path: Path, option: str, expected: str) -> Path:
    """Check ``path`` is a non-empty readable file; CliError naming ``option`` and ``expected`` otherwise."""
    if not path.exists():
        raise CliError(f"{option} {path}: no such file (expected {expected})")
    if path.is_dir():
        raise CliError(f"{option} {path}: is a folder (expected {expected})")
    if not os.access(path, os.R_OK):
        raise CliError(f"{option} {path}: cannot read this file (expected {expected})")
    if path.stat().st_size == 0:
        raise CliError(f"{option} {path}: the file is empty (expected {expected})")
    return path
