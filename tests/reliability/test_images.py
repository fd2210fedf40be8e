"""The built images: no secret in any layer or in the image config, and no capabilities in effect.

The images are built by the project's own script (``make images``) with a planted
``OPENAI_API_KEY`` in the builder's environment, as a developer who exported
their key would build them; every byte of ``docker save`` (all layers, configs,
history) is then searched for it, and for the caller's own key if one is set.
Each service image's default user must not be root and its process must hold no
effective capability. (The containers engineer's tests check the encoder's
read-only model mount and the loopback-only ports: tests/docker.)
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("trainer", "encoder", "describer", "reporter")
PLANTED = "sk-planted-IMAGE-" + "Zq7" * 12  # key-shaped canary
CHUNK = 1 << 20  # bytes read from `docker save` at a time


@pytest.fixture(scope="module")
def images(docker_available: None) -> dict[str, str]:
    env = {**os.environ, "TRAJLAB_VARIANT": "cpu", "OPENAI_API_KEY": PLANTED}
    proc = subprocess.run(
        ["bash", "deploy/docker/build-images.sh", *SERVICES],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=2000,
    )
    assert proc.returncode == 0, f"make images failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {s: f"trajlab/{s}:cpu" for s in SERVICES}


def _saved_image_contains(image: str, needles: list[bytes]) -> list[bytes]:
    """Which needles occur anywhere in ``docker save image`` (streamed, chunk overlap kept)."""
    proc = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    keep = max(len(n) for n in needles) - 1
    tail = b""
    found: set[bytes] = set()
    while block := proc.stdout.read(CHUNK):
        window = tail + block
        found.update(n for n in needles if n in window)
        tail = window[-keep:]
    assert proc.wait(300) == 0, f"docker save {image} failed"
    return sorted(found)


@pytest.mark.parametrize("service", SERVICES)
def test_no_key_in_any_layer_or_the_image_config(images: dict[str, str], service: str) -> None:
    needles = [PLANTED.encode()]
    own = os.environ.get("OPENAI_API_KEY", "").strip()
    if len(own) >= 8:  # a real key of whoever runs this must not be in an image either
        needles.append(own.encode())
    inspect = subprocess.run(
        ["docker", "image", "inspect", images[service]], capture_output=True, text=True, check=True
    ).stdout
    assert not any(n.decode() in inspect for n in needles), "key in the image config or history"
    # A string every image holds (its entrypoint module) proves the scan reads the layers.
    control = f"services/{service}/__main__.py".encode()
    found = _saved_image_contains(images[service], [*needles, control])
    assert found == [control], f"key found in a layer of {images[service]} (or the scan saw nothing): {found}"


@pytest.mark.parametrize("service", SERVICES)
def test_processes_run_as_a_non_root_user_with_no_capabilities(images: dict[str, str], service: str) -> None:
    # The image's own USER; only the entrypoint is swapped so the process reports on itself.
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", images[service],
         "-c", "print(open('/proc/self/status').read())"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    status = dict(re.findall(r"^(\w+):\s*(.*)$", out.stdout, re.M))
    uids = status["Uid"].split()
    assert uids[0] != "0" and uids[1] != "0", f"{service} runs as root: {status['Uid']}"
    assert int(status["CapEff"], 16) == 0, f"{service} holds capabilities {status['CapEff']}"
    assert int(status["CapAmb"], 16) == 0 and int(status["CapPrm"], 16) == 0
