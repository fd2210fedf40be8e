"""The encoder serving a model repository in a bucket, over gRPC, against a real S3 server.

Trainers publish versions as units (files, then ``_COMPLETE.json`` with their sha256);
the encoder polls with one listing per poll and serves only complete, verified versions.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.encoder.server import EncoderServer
from services.encoder.settings import EncoderSettings
from tests.contract.encoder import kit
from tests.reliability.procs import ROOT, ServiceProcess
from trajlab.clients.encoder import EncoderClient
from trajlab.config import load_settings
from trajlab.modelbucket import publish_to_store
from trajlab.modelrepo import METADATA_FILE, MODEL_FILE
from trajlab.store import Store, open_store
from trajlab.store.units import MARKER

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bucket-onnx")
    return {
        "a": kit.export_tiny_model(d / "a.onnx", seed=0),
        "b": kit.export_tiny_model(d / "b.onnx", seed=1),
    }


def _publish(store: Store, onnx_path: Path, staging: Path) -> int:
    return publish_to_store(store, "b1", onnx_path, kit.metadata("b1"), staging)[0]


def _wait(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _served(client: EncoderClient) -> list[int]:
    return sorted(m.version for m in client.list_models("b1"))


def test_a_version_published_while_serving_is_picked_up_by_the_encoder_process(
    bucket: str, s3_env: dict[str, str], onnx: dict[str, Path], tmp_path: Path
) -> None:
    store = open_store(f"s3://{bucket}/models")
    assert _publish(store, onnx["a"], tmp_path / "staging") == 1
    proc = ServiceProcess(
        "services.encoder",
        {
            **s3_env,
            "TRAJLAB_ENCODER_PORT": "0",
            "TRAJLAB_ENCODER_METRICS_PORT": "-1",
            "TRAJLAB_ENCODER_MODEL_REPO": f"s3://{bucket}/models",
            "TRAJLAB_ENCODER_MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "TRAJLAB_ENCODER_POLL_SECONDS": "0.2",
            "TRAJLAB_ENCODER_INTRA_OP_THREADS": "1",
            "TRAJLAB_ENCODER_WARMUP_RUNS": "1",
        },
    )
    clip = kit.random_clips(1)[0]
    try:
        with EncoderClient(proc.target, timeout=20) as client:
            client.wait_until_serving(timeout=60)
            first = client.classify(clip, branch="b1")
            assert first.version == 1
            assert _publish(store, onnx["b"], tmp_path / "staging") == 2
            seen = set()

            def on_v2() -> bool:  # keep calling while the new version is swapped in: no call fails
                seen.add(client.classify(clip, branch="b1").version)
                return 2 in seen

            _wait(on_v2, "the encoder to serve version 2")
            second = client.classify(clip, branch="b1")
            assert second.version == 2
            assert second.probabilities != first.probabilities  # other weights really serve
            assert client.model_info("b1").sha256 == kit_sha(onnx["b"])
    finally:
        proc.terminate()
    assert "AWS_SECRET_ACCESS_KEY" not in proc.output and s3_env["AWS_SECRET_ACCESS_KEY"] not in proc.output


def kit_sha(path: Path) -> str:
    from trajlab.modelrepo import sha256_file

    return sha256_file(path)


@pytest.fixture
def served(
    bucket: str, s3_env: dict[str, str], onnx: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[EncoderServer, EncoderClient, Store]]:
    store = open_store(f"s3://{bucket}/repo")
    _publish(store, onnx["a"], tmp_path / "staging")
    srv = EncoderServer(
        load_settings(
            EncoderSettings, host="127.0.0.1", port=0, metrics_port=-1, model_repo=f"s3://{bucket}/repo",
            model_cache_dir=tmp_path / "cache", poll_seconds=0.05, intra_op_threads=1, warmup_runs=1,
        )
    )  # fmt: skip
    port = srv.start()
    with EncoderClient(f"127.0.0.1:{port}", timeout=20) as client:
        client.wait_until_serving(timeout=60)
        yield srv, client, store
    srv.stop(0)


def _polls(srv: EncoderServer, n: int) -> None:
    """Wait until the encoder has listed the bucket ``n`` more times."""
    mirror = srv.store.mirror  # type: ignore[attr-defined]
    start = mirror.lists
    _wait(lambda: mirror.lists >= start + n, f"{n} polls of the bucket")


def test_a_version_without_its_marker_is_never_served(
    served: tuple[EncoderServer, EncoderClient, Store], onnx: dict[str, Path], tmp_path: Path
) -> None:
    srv, client, store = served
    # What a publisher killed before its marker leaves: the model and metadata, no marker.
    v = _publish(store, onnx["b"], tmp_path / "staging")
    marker = store.get_bytes(f"b1/{v}/{MARKER}")
    store.delete([f"b1/{v}/{MARKER}"])
    _polls(srv, 5)
    assert _served(client) == [1]
    assert client.classify(kit.random_clips(1)[0], branch="b1").version == 1
    assert not (tmp_path / "cache" / "b1" / str(v)).exists()
    # The same objects with their marker: now it is complete, and served.
    store.put_bytes(f"b1/{v}/{MARKER}", marker)
    _wait(lambda: _served(client) == [1, v], f"version {v} once its marker is written")


def test_a_corrupt_object_is_refused_and_the_old_version_keeps_serving(
    served: tuple[EncoderServer, EncoderClient, Store], onnx: dict[str, Path], tmp_path: Path
) -> None:
    srv, client, store = served
    clip = kit.random_clips(1)[0]
    v = _publish(store, onnx["b"], tmp_path / "staging")
    _wait(lambda: _served(client) == [1, v], f"version {v}")
    # A newer version whose model object was replaced after its marker was written.
    bad = _publish(store, onnx["a"], tmp_path / "staging")
    good_bytes = onnx["a"].read_bytes()
    store.put_bytes(f"b1/{bad}/{MODEL_FILE}", good_bytes[:-100] + b"\0" * 100)
    _polls(srv, 5)
    assert _served(client) == [1, v]
    assert client.classify(clip, branch="b1").version == v
    refused = [f for f in srv.store.failures() if f[1] == bad]
    assert refused and refused[0][2] == "checksum" and MODEL_FILE in refused[0][3], srv.store.failures()
    # Metadata that no longer matches is refused the same way.
    store.put_bytes(f"b1/{bad}/{MODEL_FILE}", good_bytes)
    store.put_bytes(f"b1/{bad}/{METADATA_FILE}", b"{}")
    _polls(srv, 5)
    assert _served(client) == [1, v]
    # Repaired objects are tried again and served.
    store.put_bytes(
        f"b1/{bad}/{METADATA_FILE}", (tmp_path / "staging" / "b1" / str(bad) / METADATA_FILE).read_bytes()
    )
    _wait(lambda: _served(client) == [v, bad], f"the repaired version {bad}")


@pytest.mark.parametrize("problem", ["wrong credentials", "missing bucket"])
def test_the_encoder_process_stops_at_start_with_one_clear_error(
    problem: str, bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("TRAJLAB_")}
    env.update(s3_env)
    url = f"s3://{bucket}/models"
    if problem == "wrong credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-value-77"
        expected = "the S3 credentials were refused"
    else:
        url = "s3://no-such-bucket-here/models"
        expected = "bucket 'no-such-bucket-here' does not exist"
    env.update(
        TRAJLAB_ENCODER_PORT="0",
        TRAJLAB_ENCODER_METRICS_PORT="-1",
        TRAJLAB_ENCODER_MODEL_REPO=url,
        TRAJLAB_ENCODER_MODEL_CACHE_DIR=str(tmp_path / "cache"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "services.encoder"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert expected in out and url in out, out
    assert "Traceback" not in out and "wrong-secret-value-77" not in out, out
