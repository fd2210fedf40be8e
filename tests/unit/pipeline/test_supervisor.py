"""The process supervisor behind `trajlab run`: no child outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trajlab_cli.supervisor import ChildFailed, Supervisor, free_port

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# A child that ignores SIGTERM and starts a grandchild: the worst case for cleanup.
STUBBORN = [
    sys.executable,
    "-c",
    textwrap.dedent(
        """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print("ready", flush=True)
        time.sleep(600)
        """
    ),
]


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie still answers kill(0); reap it if it is ours.
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def _group_members(pgid: int, settle: float = 0.0) -> list[int]:
    """Live (non-zombie) processes of a process group, waiting up to ``settle`` s for it to empty."""
    deadline = time.monotonic() + settle
    while True:
        out = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(pgid)], capture_output=True, text=True)
        pids = [int(line.split()[0]) for line in out.stdout.splitlines() if "Z" not in line.split()[1]]
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.05)


def test_stop_all_terminates_children_and_their_grandchildren(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, grace_seconds=1.0)
    a = sup.start("a", SLEEPER)
    b = sup.start("b", STUBBORN)
    deadline = time.monotonic() + 10
    while "ready" not in b.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group_members(b.proc.pid)) == 2  # child + grandchild
    sup.stop_all()
    assert a.proc.poll() is not None and b.proc.poll() is not None
    assert _group_members(b.proc.pid, settle=5.0) == []


def test_a_crashed_child_is_reported_with_its_log(tmp_path: Path) -> None:
    with Supervisor(tmp_path, grace_seconds=1.0) as sup:
        sup.start("ok", SLEEPER)
        sup.start("bad", [sys.executable, "-c", "import sys; print('boom: no model'); sys.exit(3)"])
        time.sleep(0.5)
        with pytest.raises(ChildFailed) as err:
            for _ in range(50):
                sup.check()
                time.sleep(0.1)
        assert err.value.name == "bad" and err.value.returncode == 3
        assert "boom: no model" in str(err.value) and "bad.log" in str(err.value)
    assert sup.alive() == []


def test_children_die_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(Path.cwd())!r})
            from trajlab_cli.supervisor import Supervisor
            sup = Supervisor({str(tmp_path / 'logs')!r})
            c = sup.start("child", [sys.executable, "-c", "import time; time.sleep(600)"])
            print(c.proc.pid, flush=True)
            time.sleep(600)
            """
        )
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _gone(child_pid), "child outlived a SIGKILLed parent"


def test_free_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    # An ephemeral port can be taken as an outgoing connection's source port between the pick and
    # the child's bind (a CI run lost a trainer that way); below the range only listeners compete.
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= p < start for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))
