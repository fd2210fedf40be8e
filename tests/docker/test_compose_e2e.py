"""`docker compose up` on the quick profile, on the CPU, end to end.

The stack a user starts, less what needs a registry here: Grafana and the TGI
containers (official images that cannot be pulled). Prometheus runs as Debian's
build of it (trajlab/prometheus:debian, made by ``make images``) with the shipped
config, so "every target up" is checked for real. The test waits for the report the
reporter builds once every trainer is done, checks what it says, classifies a fresh
clip through the encoder's port published on 127.0.0.1, and checks that
``docker compose down -v`` leaves no container, network or volume behind.

While the trainers train, two of them are killed after their first checkpoint, in the
two ways a trainer dies in practice (no extra training run: the same stack goes on to
the report). trainer-b1's main process gets SIGKILL from the host, as the kernel's OOM
killer or a crash does: Docker must restart it by itself (``restart: unless-stopped``)
and it must resume from its checkpoint. trainer-b2 gets a literal ``docker kill``,
which Docker treats as a deliberate stop and does not restart; the user's
``docker compose up -d trainer-b2`` must then resume it from its checkpoint. Both must
finish DONE with an exported model that the encoder serves and the report compares.
Every running container is also checked for what compose.yaml promises: no Linux
capabilities (bounding set empty) and no-new-privileges.

Published host ports are randomised (an override file, loopback only), so the test
never collides with services a developer runs on the default ports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import numpy as np
import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
PROJECT = "trajlab-e2e"
TRAINERS = [f"trainer-b{i}" for i in range(1, 5)]
SERVICES = [*TRAINERS, "encoder", "describer", "reporter", "prometheus"]
REPORT_TIMEOUT_S = 1500  # seconds: quick profile, four trainers sharing 2 cores
RESTART_TIMEOUT_S = 300  # seconds for a killed trainer to answer again (image start, dataset load)
HARDENED = ["describer", "encoder", "prometheus", "reporter", *TRAINERS]  # cap_drop ALL, no-new-privileges
STARTED = [0.0]  # time.monotonic() when `compose up` returned (for the printed timings)
_CHECKPOINT_SAVED = re.compile(r"checkpoint saved: \S*ckpt-epoch-(\d+)\.pt")
OVERRIDE = """
# Test-only: random loopback host ports instead of the fixed defaults.
services:
""" + "".join(
    f"  {name}:\n    ports: !override [\"127.0.0.1::{port}\"]\n"
    for name, port in [*[(t, 50052) for t in TRAINERS], ("encoder", 50051), ("describer", 50053),
                       ("reporter", 50054), ("prometheus", 9090)]
)


class Compose:
    def __init__(self, env: dict[str, str], override: Path) -> None:
        self.env = env
        self.base = ["docker", "compose", "-p", PROJECT, "-f", "compose.yaml", "-f", str(override)]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.base, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def port(self, service: str, port: int) -> str:
        out = self.run("port", service, str(port)).stdout.strip()
        host, _, p = out.rpartition(":")
        assert host == "127.0.0.1", out
        return f"127.0.0.1:{p}"

    def states(self) -> dict[str, str]:
        out = self.run("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()] if not out.startswith("[") else json.loads(out)
        return {r["Service"]: f'{r["State"]} {r.get("Health", "")}'.strip() for r in rows}

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40", check=False).stdout[-12000:]

    def container(self, service: str) -> str:
        cid = self.run("ps", "-a", "-q", service).stdout.strip()
        assert cid, f"no container for {service}"
        return cid


def docker(*args: str, timeout: float = 60) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr  # `docker logs` replays the container's stderr on stderr


def inspect(cid: str) -> dict[str, Any]:
    return json.loads(docker("inspect", cid))[0]


def _docker_ls(kind: str) -> list[str]:
    cmd = ["docker", kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]
    if kind == "container":
        cmd.insert(3, "-a")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.split()


@pytest.fixture(scope="module")
def stack(image) -> Iterator[tuple[Compose, Path]]:  # type: ignore[no-untyped-def]
    for svc in ("trainer", "encoder", "describer", "reporter", "prometheus"):
        image(svc)
    base = subprocess.run(
        ["bash", "deploy/docker/base-image.sh"], cwd=REPO, capture_output=True, text=True, timeout=600, check=True
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="trajlab-e2e-"))
    reports = work / "reports"
    reports.mkdir()
    reports.chmod(0o777)  # the reporter runs as uid 10001
    override = work / "compose.override.yaml"
    override.write_text(OVERRIDE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAJLAB_", "OPENAI_"))}
    env.update(
        TRAJLAB_BASE_IMAGE=base,
        TRAJLAB_PROMETHEUS_IMAGE="trajlab/prometheus:debian",
        TRAJLAB_REPORTS_DIR=str(reports),
        TRAJLAB_PROFILE="quick",
    )
    compose = Compose(env, override)
    compose.run("down", "-v", "--remove-orphans", check=False)  # leftovers of an interrupted run
    try:
        compose.run("up", "-d", "--no-build", *SERVICES, timeout=900)
        STARTED[0] = time.monotonic()
        yield compose, reports
    finally:
        compose.run("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=300)
        shutil.rmtree(work, ignore_errors=True)


def wait_for_report(compose: Compose, reports: Path) -> Path:
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while time.monotonic() < deadline:
        found = sorted(reports.glob("*/PARALLEL_RESULTS_COMPARISON.md"))
        if found:
            time.sleep(2)  # the HTML and figures are written beside it
            return found[-1].parent
        time.sleep(10)
    raise AssertionError(f"no report after {REPORT_TIMEOUT_S} s; states {compose.states()}\n{compose.logs()}")


def fresh_clip() -> np.ndarray:
    """A clip the models never saw: the quick profile's look, another seed."""
    from trajlab.data import build_dataset, load_dataset
    from trajlab.profiles import load_profile

    cfg = load_profile("quick").dataset.model_copy(update={"samples": 8, "test_samples": 0, "seed": 4242})
    out = Path(tempfile.mkdtemp(prefix="trajlab-fresh-"))
    try:
        ds = load_dataset(build_dataset(cfg, out / "data"))
        return np.array(ds.train.clips[0])  # (8 samples leave the validation split empty)
    finally:
        shutil.rmtree(out, ignore_errors=True)


class Killed(NamedTuple):
    """A trainer killed mid-training: the newest checkpoint epoch it had logged before."""

    service: str
    container: str
    checkpoint_epoch: int


def newest_checkpoint(cid: str) -> int:
    """The newest epoch whose checkpoint the trainer has logged as saved (0: none yet)."""
    return max((int(m) for m in _CHECKPOINT_SAVED.findall(docker("logs", cid))), default=0)


def trainer_status(compose: Compose, service: str) -> Any:
    """The trainer's GetStatus, or None while it cannot answer (e.g. restarting)."""
    from trajlab.clients.trainer import TrainerClient

    try:
        # Re-resolved every time: a restarted container may get another ephemeral host port.
        target = compose.port(service, 50052)
        with TrainerClient(target, timeout=10, retries=False) as client:
            return client.get_status()
    except (AssertionError, grpc.RpcError):
        return None


def wait_for_checkpoint(compose: Compose, service: str) -> tuple[str, int]:
    """Wait until ``service`` has saved a checkpoint and is still training; (container, epoch)."""
    cid = compose.container(service)
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while time.monotonic() < deadline:
        epoch = newest_checkpoint(cid)
        if epoch:
            status = trainer_status(compose, service)
            assert status is not None and status.state == "training" and status.epoch < status.total_epochs, (
                f"{service} finished before it could be killed mid-training: {status}"
            )
            return cid, epoch
        time.sleep(2)
    raise AssertionError(f"{service} saved no checkpoint in {REPORT_TIMEOUT_S} s\n{compose.logs()}")


def sigkill_main_process(cid: str) -> None:
    """SIGKILL the container's main process from outside, as the OOM killer or a crash ends it.

    Not `docker kill`: Docker records that as a user's stop and then never restarts the
    container. From the host PID namespace (root; the CI runs as root), else from a
    throwaway container in the host's PID namespace (a user of the docker group).
    """
    pid = int(inspect(cid)["State"]["Pid"])
    assert pid > 0, f"{cid} is not running"
    if os.geteuid() == 0:
        os.kill(pid, signal.SIGKILL)
    else:
        docker("run", "--rm", "--pid=host", "--user=0", "--entrypoint=python", "trajlab/trainer:cpu",
               "-c", f"import os; os.kill({pid}, 9)")


def wait_until_resumed(compose: Compose, killed: Killed) -> Any:
    """Wait until the killed trainer answers again, resumed from (at least) its checkpoint."""
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        status = trainer_status(compose, killed.service)
        if status is not None and status.resumed_from_epoch:
            assert status.resumed_from_epoch >= killed.checkpoint_epoch, (killed, status)
            return status
        time.sleep(2)
    raise AssertionError(
        f"{killed.service} did not resume within {RESTART_TIMEOUT_S} s: {status}; "
        f"{inspect(killed.container)['State']}\n{docker('logs', '--tail', '60', killed.container)[-6000:]}"
    )


def kill_two_trainers_mid_training(compose: Compose) -> tuple[Killed, Killed]:
    """b1: SIGKILL from outside, restarted by Docker. b2: `docker kill`, restarted by the user."""

    def resumed(killed: Killed, since: float) -> None:
        status = wait_until_resumed(compose, killed)
        assert status.state in ("training", "evaluating", "exporting", "done"), status
        print(f"[compose-kill] {killed.service}: answering again, resumed from epoch "
              f"{status.resumed_from_epoch}, {time.monotonic() - since:.0f} s after the kill")

    cid, epoch = wait_for_checkpoint(compose, "trainer-b1")
    crashed = Killed("trainer-b1", cid, epoch)
    killed_at = {crashed.service: time.monotonic()}
    sigkill_main_process(cid)
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while inspect(cid)["RestartCount"] < 1:
        assert time.monotonic() < deadline, f"Docker did not restart {crashed}: {inspect(cid)['State']}"
        time.sleep(1)
    print(f"[compose-kill] trainer-b1: SIGKILL after its epoch-{epoch} checkpoint; restarted by Docker "
          f"within {time.monotonic() - killed_at[crashed.service]:.0f} s")

    # b2 is killed right away, not after b1 has resumed: the quick profile trains fast enough
    # that b2 could otherwise finish before it is killed mid-training.
    cid, epoch = wait_for_checkpoint(compose, "trainer-b2")
    stopped = Killed("trainer-b2", cid, epoch)
    killed_at[stopped.service] = time.monotonic()
    docker("kill", cid)
    time.sleep(5)  # Docker's first automatic restart would come after 0.1 s: 5 s is plenty to see none
    state = inspect(cid)
    assert state["State"]["Status"] == "exited" and state["RestartCount"] == 0, state["State"]
    compose.run("up", "-d", "--no-build", "trainer-b2", timeout=300)
    assert compose.container("trainer-b2") == cid  # started again, not recreated: same checkpoints

    resumed(crashed, killed_at[crashed.service])
    resumed(stopped, killed_at[stopped.service])
    return crashed, stopped


def assert_hardened(compose: Compose) -> None:
    """No capabilities (even the bounding set) and no privilege gain, in every trajlab container."""
    for service in HARDENED:
        cid = compose.container(service)
        host = inspect(cid)["HostConfig"]
        assert [c.upper() for c in host["CapDrop"] or []] == ["ALL"], (service, host["CapDrop"])
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), (service, host["SecurityOpt"])
        # What the main process really holds: the kernel's view, not only the configuration.
        fields = dict(
            line.split(":", 1) for line in docker("exec", cid, "cat", "/proc/1/status").splitlines() if ":" in line
        )
        for cap in ("CapBnd", "CapEff", "CapPrm", "CapAmb"):
            assert int(fields[cap], 16) == 0, (service, cap, fields[cap])
        assert fields["NoNewPrivs"].strip() == "1", (service, fields["NoNewPrivs"])
        assert fields["Uid"].split()[0] != "0", (service, "runs as root")


def prometheus_targets(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://{url}/api/v1/targets", timeout=10) as resp:
        return json.loads(resp.read())["data"]["activeTargets"]


def test_compose_up_trains_serves_reports_and_cleans_up(stack: tuple[Compose, Path]) -> None:
    compose, reports = stack
    assert_hardened(compose)
    crashed, stopped = kill_two_trainers_mid_training(compose)
    report_dir = wait_for_report(compose, reports)
    print(f"[compose-kill] report written {time.monotonic() - STARTED[0]:.0f} s after `compose up` returned")
    text = (report_dir / "PARALLEL_RESULTS_COMPARISON.md").read_text()
    for branch in ("b1", "b2", "b3", "b4"):
        assert branch in text
    assert "winner" in text.lower()
    assert (report_dir / "report.html").is_file()
    assert list(report_dir.glob("*.png")), "the report has no figures"

    # A fresh clip through the encoder's port on loopback.
    from trajlab.codec import array_to_clip
    from trajlab.common.v1 import common_pb2
    from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
    from trajlab.profiles import CLASS_NAMES

    with grpc.insecure_channel(compose.port("encoder", 50051)) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        served = {m.model.branch for m in stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=30).models}
        assert served == {"b1", "b2", "b3", "b4"}
        resp = stub.Classify(
            encoder_pb2.ClassifyRequest(model=common_pb2.ModelRef(branch="b1"), clip=array_to_clip(fresh_clip(), 8.0)),
            timeout=30,
        )
    assert resp.class_name in CLASS_NAMES
    assert abs(sum(resp.probabilities) - 1.0) < 1e-3

    # The killed trainers finished from their checkpoints (not from scratch) and exported a model;
    # b1 was restarted once by Docker (no crash loop), b2 only by the user.
    for killed, restarts in ((crashed, 1), (stopped, 0)):
        status = trainer_status(compose, killed.service)
        assert status is not None and status.state == "done", (killed, status)
        assert status.resumed_from_epoch >= killed.checkpoint_epoch > 0, (killed, status)
        assert status.model_version > 0, (killed, status)
        assert inspect(killed.container)["RestartCount"] == restarts, killed

    # Prometheus (the shipped config) scrapes every service.
    targets = prometheus_targets(compose.port("prometheus", 9090))
    jobs = sorted(t["labels"]["job"] for t in targets)
    assert jobs == ["describer", "encoder", "prometheus", "reporter", "trainer", "trainer", "trainer", "trainer"]
    down = [t["scrapeUrl"] for t in targets if t["health"] != "up"]
    assert not down, f"targets down: {down}"
    branches = sorted(t["labels"].get("branch", "") for t in targets if t["labels"]["job"] == "trainer")
    assert branches == ["b1", "b2", "b3", "b4"]

    # Every container is still up (none crash-looping) and healthy where it has a check.
    for svc, state in compose.states().items():
        assert state.startswith("running"), (svc, state)

    # down -v leaves nothing of the project behind.
    compose.run("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300)
    assert _docker_ls("container") == []
    assert _docker_ls("network") == []
    assert _docker_ls("volume") == []
