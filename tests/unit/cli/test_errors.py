"""Every ``trajlab`` command answers bad input with one ``error:`` line and a documented exit status.

The commands are found by walking the CLI's command tree, so a new command without
rows in BAD_INPUTS fails ``test_every_command_has_bad_inputs``. To add one, add a line
``"zoo list": [("--registry {missing}", BAD, "no such file")],`` to BAD_INPUTS: the
command's path as ``trajlab --help`` shows it, then (arguments, exit status, text the
error line must contain). Arguments may name the files below in braces: {missing},
{folder}, {empty_npy}, {empty_json}, {text_npy}, {pickle_npy}, {bad_json}, {broken_json},
{shape_npy}, {float_clip}, {clip}, {points}, {bad_yaml}, {unwritable} (a folder that cannot
be created: under a regular file), {tmp} (a fresh folder) and {unreachable} (127.0.0.1:1).
"""

from __future__ import annotations

import errno
import json
import pickle
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from trajlab_cli import app
from trajlab_cli.errors import EXIT_BAD_INPUT as BAD
from trajlab_cli.errors import EXIT_FAILED as FAILED
from trajlab_cli.errors import EXIT_INTERRUPTED, classify, one_line

ROOT = Path(__file__).resolve().parents[3]
OFFLINE = "{unreachable} --timeout 2"  # a target nothing listens on, and a short deadline

BAD_INPUTS: dict[str, list[tuple[str, int, str]]] = {
    "dataset build": [
        ("--profile {missing}.yaml --out {tmp}/d", BAD, "does not exist"),
        ("--profile {bad_yaml} --out {tmp}/d", BAD, "not valid YAML"),
        ("--profile {empty_json} --out {tmp}/d", BAD, "name: Field required"),
        ("--profile quick --out {unwritable}", BAD, "--out"),
        ("--profile quick --seed -1 --out {tmp}/d", BAD, "--seed"),
    ],
    "dataset show": [
        ("--data {missing}", BAD, "no dataset in"),
        ("--data {folder}", BAD, "no dataset in"),
        ("--data {empty_npy}", BAD, "no dataset in"),
    ],
    "dataset preview": [
        ("--data {missing}", BAD, "no dataset in"),
        ("--data {missing} --out {unwritable}", BAD, "--out"),
        ("--data {missing} --split nope --per-class 0", BAD, "--per-class"),
    ],
    "train": [
        ("--branch b9", BAD, "unknown branch 'b9'"),
        ("--profile {missing}.yaml", BAD, "does not exist"),
        ("--branches {bad_yaml}", BAD, "not valid YAML"),
        ("--run-dir {unwritable} --no-export", BAD, "--run-dir"),
    ],
    "classify": [
        ("{missing}.npy --target " + OFFLINE, BAD, "no such file"),
        ("{folder} --target " + OFFLINE, BAD, "no .png frames"),
        ("{empty_npy} --target " + OFFLINE, BAD, "empty"),
        ("{text_npy} --target " + OFFLINE, BAD, "not a numeric array"),
        ("{pickle_npy} --target " + OFFLINE, BAD, "not a numeric array"),
        ("{float_clip} --target " + OFFLINE, BAD, "must be uint8"),
        ("{shape_npy} --target " + OFFLINE, BAD, "must have shape (T, H, W, C)"),
        ("{clip} --target " + OFFLINE, FAILED, "given by --target"),
    ],
    "forecast": [
        ("{missing}.npy --target " + OFFLINE, BAD, "no such file"),
        ("{shape_npy} --target " + OFFLINE, BAD, "must have shape (T, H, W, C)"),
        ("{clip} --target " + OFFLINE, FAILED, "UNAVAILABLE"),
    ],
    "models": [
        ("--target " + OFFLINE, FAILED, "UNAVAILABLE"),
    ],
    "describe": [
        ("--points {missing}.json --local", BAD, "no such file"),
        ("--points {folder} --local", BAD, "is a folder"),
        ("--points {empty_json} --local", BAD, "empty"),
        ("--points {empty_npy} --local", BAD, "empty"),
        ("--points {bad_json} --local", BAD, "'observed' must be numbers"),
        ("--points {broken_json} --local", BAD, "not valid JSON"),
        ("--points {pickle_npy} --local", BAD, "not a numeric .npy array"),
        ("--points {text_npy} --local", BAD, "not a numeric .npy array"),
        ("--points {shape_npy} --local", BAD, "expected (N, 3) or (N, 4) points"),
        ("--points {points} --local --backend nope", BAD, "unknown backend"),
        ("--points {points} --target " + OFFLINE, FAILED, "UNAVAILABLE"),
        ("--points {points} --target=" + OFFLINE, FAILED, "given by --target"),
    ],
    "backends": [
        ("--target " + OFFLINE, FAILED, "UNAVAILABLE"),
    ],
    "explain": [
        ("{missing}.npy --target " + OFFLINE, BAD, "no such file"),
        ("{text_npy} --target " + OFFLINE, BAD, "not a numeric array"),
        ("{clip} --plot {unwritable}/f.png --target " + OFFLINE, BAD, "--plot"),
        ("{clip} --target " + OFFLINE, FAILED, "given by --target"),
    ],
    "report": [
        ("", BAD, "no trainers"),
        ("--trainers b1={unreachable} --reports-dir {unwritable}", BAD, "--reports-dir"),
        ("--trainers b1={unreachable} --profile {missing}.yaml", BAD, "does not exist"),
        ("--reporter {unreachable}", FAILED, "given by --reporter"),
        ("--runs-dir {missing}", BAD, "is not a directory"),
        ("--runs-dir {folder}", BAD, "no runs in"),
        ("--runs-dir {folder} --runs b1", BAD, "branch@s<seed>"),
        ("--runs-dir ftp://host/runs", BAD, "only s3:// URLs or local paths"),
    ],
    "monitor": [
        ("--trainers garbage --once", BAD, "--trainers"),
        ("--runs-dir {missing} --once", BAD, "is not a directory"),
        ("--runs-dir {folder} --once", BAD, "no runs in"),
    ],
    "zoo": [
        ("--profile {missing}.yaml --no-parity", BAD, "does not exist"),
        ("--encoder nope --no-parity", BAD, "--encoder: unknown 'nope'; registered:"),
        ("--in-channels 0 --no-parity", BAD, "--in-channels"),
    ],
    "stress": [
        ("--branch b1 --sets fog --target " + OFFLINE, BAD, "--sets: unknown stress set 'fog'"),
        ("--branch b1 --branch b1 --target " + OFFLINE, BAD, "--branch: b1 given twice"),
        ("--branch b1 --samples 0 --target " + OFFLINE, BAD, "--samples"),
        ("--branch b1 --profile {missing}.yaml --target " + OFFLINE, BAD, "does not exist"),
        ("--branch b1 --data {unwritable} --target " + OFFLINE, BAD, "--data"),
        ("--branch b1 --data {tmp}/d --target " + OFFLINE, FAILED, "UNAVAILABLE"),
    ],
    "run": [
        ("--profile {missing}.yaml --root {tmp}/r", BAD, "does not exist"),
        ("--root {unwritable}", BAD, "--root"),
        ("--branches b9 --root {tmp}/r", BAD, "unknown branch"),
    ],
}


def _commands(cmd=None, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every runnable command's path below the root, as ``trajlab --help`` lists it ("dataset build")."""
    cmd = cmd or get_command(app)
    sub = getattr(cmd, "commands", None)
    if sub is None:
        return [" ".join(prefix)]
    return [p for name, c in sorted(sub.items()) if not c.hidden for p in _commands(c, (*prefix, name))]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The bad (and a few good) inputs the table names, in a fresh folder that is also the cwd."""
    monkeypatch.chdir(tmp_path)  # commands' default outputs (./data, ./models, ./reports) land here
    monkeypatch.delenv("TRAJLAB_REPORTER_TRAINERS", raising=False)
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "text.npy").write_text("these are words, not an array\n")
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps({"observed": [[0, 0, 5]]}))
    (tmp_path / "bad.json").write_text(json.dumps({"observed": "x"}))
    (tmp_path / "broken.json").write_text('{"observed": [[0, 0')
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "a_file").write_text("a file, not a folder\n")
    np.save(tmp_path / "shape.npy", np.zeros((8, 32), np.uint8))
    np.save(tmp_path / "float_clip.npy", np.zeros((8, 32, 32, 3), np.float32))
    np.save(tmp_path / "clip.npy", np.zeros((8, 32, 32, 3), np.uint8))
    t = np.arange(10) / 8.0
    np.save(tmp_path / "points.npy", np.c_[t, t, 0.5 * t, 5 + 0 * t])
    names = {
        "missing": "nosuch",
        "folder": "folder",
        "empty_npy": "empty.npy",
        "empty_json": "empty.json",
        "text_npy": "text.npy",
        "pickle_npy": "pickle.npy",
        "bad_json": "bad.json",
        "broken_json": "broken.json",
        "bad_yaml": "bad.yaml",
        "shape_npy": "shape.npy",
        "float_clip": "float_clip.npy",
        "clip": "clip.npy",
        "points": "points.npy",
        "unwritable": "a_file/out",
        "tmp": "fresh",
    }
    return {k: str(tmp_path / v) for k, v in names.items()} | {"unreachable": "127.0.0.1:1"}


def _invoke(args: list[str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, args)


def _assert_one_error_line(res, status: int, expected: str) -> None:  # type: ignore[no-untyped-def]
    where = f"exit {res.exit_code}, stderr:\n{res.stderr}\nstdout:\n{res.stdout}"
    assert "Traceback" not in res.output, where
    assert res.exception is None or isinstance(res.exception, SystemExit), where
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), where
    assert "internal error" not in lines[0], where  # a bad input must be an expected error, not a bug
    assert expected in lines[0], where
    assert res.exit_code == status, where


def test_every_command_has_bad_inputs() -> None:
    commands = set(_commands())
    missing = sorted(commands - set(BAD_INPUTS))
    assert not missing, (
        f"trajlab command(s) {missing} have no bad inputs in BAD_INPUTS of {__file__}: add a line "
        f'"<command>": [("<args>", BAD or FAILED, "<text of the error line>")] for each'
    )
    stale = sorted(set(BAD_INPUTS) - commands)
    assert not stale, f"BAD_INPUTS names commands that no longer exist: {stale}; remove them"
    assert {"dataset build", "describe", "classify", "run"} <= commands  # the walk found the tree


@pytest.mark.parametrize(
    ("command", "args", "status", "expected"),
    [(cmd, args, status, exp) for cmd, cases in BAD_INPUTS.items() for args, status, exp in cases],
    ids=[f"{cmd}:{args}" for cmd, cases in BAD_INPUTS.items() for args, _, _ in cases],
)
def test_bad_input_is_one_line_and_an_exit_status(
    files: dict[str, str], command: str, args: str, status: int, expected: str
) -> None:
    argv = command.split() + [a.format(**files) for a in shlex.split(args)]
    _assert_one_error_line(_invoke(argv), status, expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("--log-level LOUD models", "--log-level"),
        ("nosuch", "No such command"),
        ("--log-level", "--log-level"),
    ],
)
def test_bad_root_options_and_commands(args: str, expected: str) -> None:
    _assert_one_error_line(_invoke(shlex.split(args)), BAD, expected)


def test_ctrl_c_is_130_with_one_line(files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import trajlab.data

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trajlab.data, "load_dataset", interrupted)
    _assert_one_error_line(_invoke(["dataset", "show", "--data", files["folder"]]), EXIT_INTERRUPTED, "")


def test_a_bug_is_one_line_that_says_so_and_debug_shows_its_traceback(
    files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import trajlab.data

    def broken(*_a: object, **_k: object) -> None:
        raise TypeError("an unexpected bug")

    monkeypatch.setattr(trajlab.data, "load_dataset", broken)
    res = _invoke(["dataset", "show", "--data", files["folder"]])
    assert res.exit_code == FAILED and "Traceback" not in res.output
    (line,) = res.stderr.splitlines()
    assert line.startswith("error: internal error") and "--log-level DEBUG" in line
    res = _invoke(["--log-level", "DEBUG", "dataset", "show", "--data", files["folder"]])
    assert res.exit_code == FAILED and "Traceback" in res.stderr and "an unexpected bug" in res.stderr


def test_help_documents_the_exit_statuses() -> None:
    res = _invoke(["--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "Exit status" in text and "2 bad input" in text and "130 interrupted" in text


def _trajlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trajlab_cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_the_three_tracebacks_of_the_issue_are_one_line_in_a_real_process(files: dict[str, str]) -> None:
    cwd = Path(files["tmp"]).parent
    cases = [
        (("dataset", "build", "--profile", "quick", "--out", files["unwritable"]), "--out", "a_file"),
        (("describe", "--points", files["bad_json"], "--local"), "'observed' must be numbers", "bad.json"),
        (("describe", "--points", files["pickle_npy"], "--local"), "not a numeric .npy array", "pickle.npy"),
    ]
    for args, expected, name in cases:
        proc = _trajlab(*args, cwd=cwd)
        assert proc.returncode == BAD, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith("error: ") and expected in line and name in line, line


def test_debug_adds_the_traceback_in_a_real_process(files: dict[str, str]) -> None:
    proc = _trajlab("--log-level", "DEBUG", "describe", "--points", files["bad_json"], "--local", cwd=ROOT)
    assert proc.returncode == BAD
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: --points ")


def test_ctrl_c_in_a_real_process_is_130_and_one_line(files: dict[str, str]) -> None:
    # A listener that accepts and never answers: the command blocks in its first call until Ctrl-C.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(240)
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "trajlab_cli", "classify", files["clip"], "--target", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            # As from a terminal: a suite started as a background job (`make test &`) hands its
            # children SIGINT ignored (POSIX), and Python then never turns Ctrl-C into an exception.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            conn, _ = listener.accept()  # the command is now waiting for the server
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
            conn.close()
        finally:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.splitlines() == ["error: interrupted"]


class _Rpc(Exception):
    """Stands for grpc.RpcError: what the handler reads of one (its code and details)."""

    def __init__(self, code: str, details: str) -> None:
        import grpc

        super().__init__(details)
        self._code, self._details = getattr(grpc.StatusCode, code), details

    def code(self):  # type: ignore[no-untyped-def]
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("exc", "status", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/srv/out"), BAD, "/srv/out: permission denied"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "clips"), BAD, "expected a file"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/b1"), FAILED, "runs/b1: no space left"),
        (
            _Rpc("INVALID_ARGUMENT", "clip: expected 8 frames"),
            BAD,
            "INVALID_ARGUMENT: clip: expected 8 frames",
        ),
        (_Rpc("NOT_FOUND", "no branch 'b9'"), BAD, "NOT_FOUND"),
        (_Rpc("RESOURCE_EXHAUSTED", "too many requests"), FAILED, "RESOURCE_EXHAUSTED"),
        (_Rpc("DEADLINE_EXCEEDED", "Deadline Exceeded"), FAILED, "is the service running"),
        (ValueError("line one\n  line two"), BAD, "line one; line two"),
        (TimeoutError("encoder at x not SERVING after 30 s"), FAILED, "not SERVING"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
    ],
)
def test_how_each_kind_of_error_is_classified(exc: BaseException, status: int, expected: str) -> None:
    got = classify(exc)
    assert got is not None and got[0] == status and expected in one_line(got[1]), got


def test_library_errors_keep_their_meaning_and_anything_else_is_a_bug() -> None:
    from trajlab.errors import ConfigError, FailedPrecondition

    assert classify(ConfigError("profile.epochs: must be > 0")) == (BAD, "profile.epochs: must be > 0")
    assert classify(FailedPrecondition("not trained yet"))[0] == FAILED  # type: ignore[index]
    assert classify(RuntimeError("a bug")) is None  # reported as an internal error
