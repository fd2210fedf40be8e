"""``python -m services.encoder`` as a process: env settings, SIGTERM drains in-flight calls."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.contract.encoder import kit
from trajlab.clients.encoder import EncoderClient

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_sigterm_finishes_in_flight_calls_then_exits_cleanly(
    repo: Path, onnx_models: dict[str, Path]
) -> None:
    kit.publish(repo, "b1", onnx_models["a"])
    env = {
        **os.environ,
        "TRAJLAB_ENCODER_PORT": "0",
        "TRAJLAB_ENCODER_METRICS_PORT": "0",
        "TRAJLAB_ENCODER_MODEL_REPO": str(repo),
        "TRAJLAB_ENCODER_INTRA_OP_THREADS": "1",
        # A long batching window keeps a call in flight while SIGTERM arrives.
        "TRAJLAB_ENCODER_BATCHING": "true",
        "TRAJLAB_ENCODER_MAX_BATCH_SIZE": "64",
        "TRAJLAB_ENCODER_MAX_QUEUE_DELAY_MS": "3000",
        "TRAJLAB_ENCODER_GRACE_SECONDS": "10",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.encoder"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    port_found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if re.search(r"gRPC server listening on .* \(port \d+\)", line):
                port_found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert port_found.wait(60), "".join(lines)
        port = int(re.search(r"\(port (\d+)\)", "".join(lines)).group(1))  # type: ignore[union-attr]
        clip = kit.random_clips(1)[0]
        with EncoderClient(f"127.0.0.1:{port}", timeout=20, retries=False) as enc:
            enc.wait_until_serving(30)
            from trajlab.encoder.v1 import encoder_pb2

            assert enc.classify(clip, branch="b1").version == 1
            # What the reporter and Prometheus scrape: per-branch latency, calls by code, loaded models.
            mport = int(re.search(r"metrics on http://[\d.]+:(\d+)/metrics", "".join(lines)).group(1))  # type: ignore[union-attr]
            body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
            assert 'trajlab_encoder_inference_seconds_count{branch="b1"} 1.0' in body
            assert 'trajlab_encoder_requests_total{branch="b1",code="OK",method="Classify"} 1.0' in body
            assert 'trajlab_encoder_models_loaded{branch="b1"} 1.0' in body
            assert 'trajlab_encoder_batch_size_bucket{branch="b1",le="1.0"} 1.0' in body

            req = encoder_pb2.ClassifyRequest(model={"branch": "b1"}, clip=enc._clip(clip, 0.0))
            in_flight = enc._stub.Classify.future(req, timeout=20)
            time.sleep(1.0)  # the call is now waiting in the 3 s batch window
            proc.send_signal(signal.SIGTERM)
            resp = in_flight.result()
            assert resp.model.version == 1 and resp.class_name
            time.sleep(0.2)
            with pytest.raises(grpc.RpcError) as e:
                enc.classify(clip, branch="b1", timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(5)
    out = "".join(lines)
    assert "received SIGTERM: draining" in out
    assert "loaded model b1 v1" in out and "unloaded model b1 v1" in out
    assert "Traceback" not in out
