"""Start a service as ``python -m services.<svc>`` and keep every line it prints.

The port comes from the line ``create_server`` logs for every service
("gRPC server listening on HOST:0 (port N)"), so the process binds port 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Needs log level INFO or lower (the default): the port is only known from this line.
PORT_LINE = re.compile(r"gRPC server listening on \S+ \(port (\d+)\)")


class ServiceProcess:
    """A running service; ``lines`` holds its stdout and stderr, ``port`` its gRPC port."""

    def __init__(self, module: str, env: Mapping[str, str], *, start_timeout: float = 60.0) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRAJLAB_", "OPENAI_"))}
        clean.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=clean,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._port_seen = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._port_seen.wait(start_timeout):
            self.kill()
            raise AssertionError(f"{module} did not start:\n{self.output}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = PORT_LINE.search(line)
            if m and not self._port_seen.is_set():
                self.port = int(m.group(1))
                self._port_seen.set()
        self._port_seen.set()  # exited before binding: wake the waiter

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for exit; returns the exit code (kills it if it overstays)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
