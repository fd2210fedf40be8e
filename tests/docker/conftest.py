"""Fixtures of the container tests: images built (cached) by the project's own build.

Every test here needs a Docker engine and Compose (the ``docker_available``
fixture: a failure in CI, a skip elsewhere). Images are built through
``deploy/docker/build-images.sh`` once per session, exactly as ``make images``
does; Docker's layer cache makes that a few seconds when nothing changed, and it
guarantees the tests never run a stale image of older sources.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1500  # seconds; a trainer image from scratch takes ~3 min on 2 cores

_built: dict[str, str] = {}


def build_image(service: str) -> str:
    """Build (or refresh from cache) trajlab/<service>:cpu and return its name.

    "prometheus" builds Debian's Prometheus as trajlab/prometheus:debian (no registry needed).
    """
    if service not in _built:
        start = time.monotonic()
        proc = subprocess.run(
            ["bash", "deploy/docker/build-images.sh", service],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            env={**os.environ, "TRAJLAB_VARIANT": "cpu"},
        )
        if proc.returncode != 0:
            pytest.fail(f"building the {service} image failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        _built[service] = "trajlab/prometheus:debian" if service == "prometheus" else f"trajlab/{service}:cpu"
        print(f"[docker] {service} image ready in {time.monotonic() - start:.0f} s")
    return _built[service]


@pytest.fixture(scope="session")
def image(docker_available: None) -> Callable[[str], str]:
    """image("encoder") -> "trajlab/encoder:cpu", built from the current sources."""
    return build_image


def make_world_readable(root: Path) -> None:
    """chmod a+rX below root (publish_version writes private temp dirs, then renames)."""
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | (0o555 if p.is_dir() else 0o444))
