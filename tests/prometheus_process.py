"""The real Prometheus binary on a free loopback port, for tests: a config dict in, its HTTP API out."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from trajlab_cli.supervisor import free_port


class LocalPrometheus:
    """``prometheus`` started with ``config`` (written to ``workdir``), its TSDB and log there too."""

    def __init__(self, binary: str, config: dict[str, Any], workdir: Path, port: int | None = None) -> None:
        # ``port``: one picked before the config was written (a config scraping Prometheus itself).
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def wait_for(self, expr: str, count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        """The query's result once it has at least ``count`` series; AssertionError at the timeout."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                result = self.query(expr)
            except OSError:
                result = []
            if len(result) >= count:
                return result
            time.sleep(0.5)
        raise AssertionError(
            f"{expr}: {len(result)} series, expected {count}; log: {self.log_path.read_text()[-2000:]}"
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until /-/ready answers 200; AssertionError (with the log's end) at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"Prometheus not ready in {timeout} s; log: {self.log_path.read_text()[-2000:]}")

    def wait_targets_up(self, count: int, timeout: float = 60.0) -> None:
        """Until exactly ``count`` targets are scraped and all are up."""
        deadline = time.monotonic() + timeout
        active: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                active = self.api("targets")["activeTargets"]
                if len(active) == count and all(t["health"] == "up" for t in active):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"targets not all up: {active}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> LocalPrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
