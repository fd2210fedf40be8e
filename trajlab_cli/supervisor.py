"""Run a set of local service processes and make sure none outlives us.

Used by ``trajlab run``. Each child gets its own log file and its own process
group; it is also asked (``PR_SET_PDEATHSIG``) to be sent SIGTERM by the kernel
if this process dies without cleaning up, so even ``kill -9`` of the parent
leaves no orphans. ``stop_all`` sends SIGTERM, waits for the grace period, then
SIGKILLs whatever is left, group by group.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, for a child to listen on later.

    Picked below the kernel's ephemeral range: a port the kernel hands out for ``bind(0)`` is
    also a port it may give any outgoing connection (Prometheus scraping, a gRPC client) as its
    source port between our pick and the child's bind, which then fails. Below that range only
    another listener can take it. Never the same port twice in one process.
    """
    top = min(_ephemeral_start(), 65536)
    low = max(1024, top - 12000)
    for _ in range(200):
        port = random.randrange(low, top)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: any free port
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class ChildFailed(RuntimeError):
    """A supervised process exited while it was still needed."""

    def __init__(self, name: str, returncode: int, log_path: Path, tail: str):
        self.name, self.returncode, self.log_path, self.tail = name, returncode, log_path, tail
        super().__init__(
            f"{name} exited with code {returncode}; its log is {log_path}\n--- last lines ---\n{tail}"
        )


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    # A child that is expected to exit by itself (e.g. a one-shot job) is not a failure when it does.
    may_exit: bool = False
    started_at: float = field(default_factory=time.monotonic)

    def tail(self, lines: int = 20) -> str:
        try:
            data = self.log_path.read_bytes()[-8192:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])


class Supervisor:
    """Starts named child processes, watches them, and stops them all."""

    def __init__(self, log_dir: Path, grace_seconds: float = 10.0):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.grace_seconds = grace_seconds
        self.children: dict[str, Child] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        may_exit: bool = False,
    ) -> Child:
        if name in self.children:
            raise ValueError(f"child {name!r} already started")
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log_path.open("ab") as fh:
            proc = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,  # own process group: Ctrl-C reaches us, we stop them in order
                preexec_fn=_die_with_parent,
            )
        child = Child(name, list(argv), log_path, proc, may_exit)
        self.children[name] = child
        log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        return child

    def python_module(self, name: str, module: str, env: Mapping[str, str], **kw: object) -> Child:
        return self.start(name, [sys.executable, "-m", module], env, **kw)  # type: ignore[arg-type]

    def check(self) -> None:
        """Raise ChildFailed for the first child that exited unexpectedly."""
        for child in self.children.values():
            rc = child.proc.poll()
            if rc is not None and not (child.may_exit and rc == 0):
                raise ChildFailed(child.name, rc, child.log_path, child.tail())

    def alive(self) -> list[str]:
        return [n for n, c in self.children.items() if c.proc.poll() is None]

    def stop_all(self) -> None:
        """SIGTERM every child's process group, wait up to the grace period, then SIGKILL."""
        running = [c for c in self.children.values() if c.proc.poll() is None]
        for c in running:
            _signal_group(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for c in running:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                c.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", c.name, self.grace_seconds)
                _signal_group(c.proc, signal.SIGKILL)
                c.proc.wait(timeout=10)
        # Grandchildren left in a group whose leader already exited.
        for c in self.children.values():
            _signal_group(c.proc, signal.SIGKILL)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
