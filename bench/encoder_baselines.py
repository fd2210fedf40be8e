"""The two baselines ``bench_encoder.py`` measures the served encoder against.

Each runs in a process of its own (spawned, like the server's) and answers on a pipe:
it sends a line when ready, then for each duration it receives, the latencies of
back-to-back calls for that long; None ends it. ``shape`` is the clip's (T, H, W, C).

- ``direct_worker``: onnxruntime called directly with the server's own session
  (``services.encoder.runtime.load_session``), preprocessing + run at batch 1;
- ``in_process_worker``: the encoder's whole code path without gRPC;
- ``bare_grpc_server``: the other way round, grpcio's own server around the same session with
  none of the encoder's code (run as ``python bench/encoder_baselines.py bare-grpc VERSION_DIR
  CORES``; it prints its port): what any Python gRPC server costs, the floor under the encoder's;
- ``floor_grpc_server``: grpcio's server answering Classify with a canned answer, no inference,
  at once or after holding the call idle for a while (``python bench/encoder_baselines.py
  floor-grpc [HOLD_MS]``): the round trip alone (``bench_grpc_floor.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def timeit(fn: Any, seconds: float, min_runs: int = 10) -> list[float]:
    """Latencies in seconds of repeated calls for about ``seconds``."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(out) < min_runs:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def session_description(sess: Any, options: Any) -> str:
    """The onnxruntime settings that decide speed, as set on ``options`` and used by ``sess``."""
    spin = options.get_session_config_entry("session.intra_op.allow_spinning")
    return (
        f"{sess.get_providers()[0]}, intra-op threads {options.intra_op_num_threads}, "
        f"inter-op threads {options.inter_op_num_threads}, {options.execution_mode.name}, "
        f"{options.graph_optimization_level.name}, intra-op spinning {'off' if spin == '0' else 'on'}"
    )


def direct_worker(conn: Any, version_dir: str, cores: int, shape: tuple[int, int, int, int]) -> None:
    """A process of its own, like the server's, calling onnxruntime directly on request.

    The session is the server's own: loaded by ``services.encoder.runtime.load_session``
    with the server's default ``SessionConfig`` (same SessionOptions, same warm-up runs),
    and called as the server calls it (its output names, the model's input name), so
    "direct" and "served" differ only by the serving path. Sends a description of the
    session's settings, then receives a duration in seconds and answers the latencies of
    back-to-back preprocess + run calls at batch 1 for that long; None ends it.
    """
    from services.encoder.runtime import SessionConfig, load_session, session_options
    from trajlab.preprocess import to_model_input

    cfg = SessionConfig(intra_op_threads=cores)
    loaded = load_session(Path(version_dir), cfg)
    sess, names, inp = loaded.session, list(loaded.output_names), loaded.input_name
    mean, std = loaded.metadata.input.mean, loaded.metadata.input.std
    clips = np.random.default_rng(0).integers(0, 256, size=(16, *shape), dtype=np.uint8)
    k = [0]

    def call() -> None:
        c = clips[k[0] % len(clips)]
        k[0] += 1
        sess.run(names, {inp: to_model_input(c, mean, std)})

    for _ in range(3):
        call()
    conn.send(session_description(sess, session_options(cfg)))
    while (secs := conn.recv()) is not None:
        conn.send(timeit(call, secs))


class _NoDeadline:
    """The two things the servicer asks a gRPC context: no deadline, still active."""

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return True


def in_process_worker(conn: Any, repo: str, cores: int, shape: tuple[int, int, int, int]) -> None:
    """The encoder's code path without gRPC, in a process of its own, answering like direct_worker.

    Each call parses a serialized ClassifyRequest, runs ``EncoderServicer.Classify`` (clip
    decode, validation, preprocessing, the default batching, onnxruntime, metrics, the
    response) and serializes the response, all on one thread. Against direct it measures
    the encoder's own code; against served, what gRPC's transport and threads add.
    """
    from services.encoder.engine import Encoder
    from services.encoder.repository import BatchingConfig, ModelStore
    from services.encoder.runtime import SessionConfig
    from services.encoder.servicer import EncoderServicer
    from services.encoder.settings import EncoderSettings
    from trajlab.codec import array_to_clip
    from trajlab.common.v1 import common_pb2
    from trajlab.encoder.v1 import encoder_pb2

    defaults = {name: f.default for name, f in EncoderSettings.model_fields.items()}
    store = ModelStore(
        Path(repo),
        session_config=SessionConfig(intra_op_threads=cores, warmup_runs=defaults["warmup_runs"]),
        batching=BatchingConfig(
            mode=defaults["batching"],
            max_batch_size=defaults["max_batch_size"],
            max_queue_delay_s=defaults["max_queue_delay_ms"] / 1000.0,
            max_queue_size=defaults["max_queue_size"],
        ),
        inference_concurrency=defaults["inference_concurrency"],
        hybrid_layout=defaults["intra_op_layout"] == "hybrid",
    )
    store.scan()
    servicer = EncoderServicer(Encoder(store))
    clips = np.random.default_rng(0).integers(0, 256, size=(16, *shape), dtype=np.uint8)
    model = common_pb2.ModelRef(branch="b1")
    wire = [
        encoder_pb2.ClassifyRequest(clip=array_to_clip(c, 8.0), model=model).SerializeToString()
        for c in clips
    ]
    context = _NoDeadline()
    k = [0]

    def call() -> None:
        request = encoder_pb2.ClassifyRequest.FromString(wire[k[0] % len(wire)])
        k[0] += 1
        servicer.Classify(request, context).SerializeToString()  # type: ignore[arg-type]

    for _ in range(3):
        call()
    conn.send("ready")
    while (secs := conn.recv()) is not None:
        conn.send(timeit(call, secs))


SERVER_READY = "baseline gRPC server on port"  # what a baseline server prints once it serves
HOLD_TAKES = "a hold takes (ms)"  # what a floor server that holds its answer prints before that


def start_baseline_server(cmd: list[str], cwd: Path) -> tuple[Any, int, float]:
    """Start a baseline server process (this module's ``bare-grpc``/``floor-grpc``, or
    ``grpc_node/floor.js server``); (process, port, what its hold really takes in ms, 0 if none)."""
    import subprocess
    import threading

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    hold = 0.0
    for line in proc.stdout:
        if line.startswith(HOLD_TAKES):
            hold = float(line.split()[-1])
        if line.startswith(SERVER_READY):
            port = int(line.split()[-1])
            break
    else:
        raise RuntimeError(f"{' '.join(cmd)} exited before serving")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain its log
    return proc, port, hold


def bare_grpc_server(version_dir: str, cores: int) -> None:
    """Serve ``EncoderService.Classify`` with grpcio alone around the server's own session.

    No interceptors, admission, model store, thread layout, metrics or health: a thread-pool
    server of the encoder's default size calling preprocess + ``run`` on the one session loaded
    by ``load_session``, as direct does. Against direct it measures what grpcio's server, the
    transport and the client cost; against the encoder, what the encoder's code adds to that.
    Runs until killed.
    """
    from services.encoder.runtime import SessionConfig, load_session
    from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
    from trajlab.preprocess import to_model_input

    loaded = load_session(Path(version_dir), SessionConfig(intra_op_threads=cores))
    sess, names, inp = loaded.session, list(loaded.output_names), loaded.input_name
    mean, std = loaded.metadata.input.mean, loaded.metadata.input.std
    class_names = list(loaded.metadata.class_names)

    class Bare(encoder_pb2_grpc.EncoderServiceServicer):
        def Classify(self, request, context):  # type: ignore[no-untyped-def]
            c = request.clip
            clip = np.frombuffer(c.pixels, dtype=np.uint8).reshape(c.frames, c.height, c.width, c.channels)
            probs = sess.run(names, {inp: to_model_input(clip, mean, std)})[0][0]
            return encoder_pb2.ClassifyResponse(
                class_name=class_names[int(np.argmax(probs))],
                probabilities=[float(p) for p in probs],
                class_names=class_names,
            )

    _thread_pool_server(Bare()).wait_for_termination()


def _thread_pool_server(servicer: Any) -> Any:
    """grpcio's threaded server of the encoder's default size, with its message limits, serving
    ``servicer`` as EncoderService on a free loopback port; started, its port printed."""
    from concurrent import futures

    import grpc

    from services.encoder.settings import EncoderSettings
    from trajlab.encoder.v1 import encoder_pb2_grpc

    defaults = EncoderSettings.model_fields
    size = int(defaults["max_message_bytes"].default)
    server = grpc.server(
        futures.ThreadPoolExecutor(int(defaults["max_workers"].default)),
        options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)],
    )
    encoder_pb2_grpc.add_EncoderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"{SERVER_READY} {port}", flush=True)
    return server


def floor_grpc_server(hold_ms: float = 0.0) -> None:
    """Serve ``EncoderService.Classify`` with a canned answer (the request is parsed, nothing run),
    after sleeping ``hold_ms``: the round trip of a clip through grpcio with no work behind it, when
    the answer comes at once or, like a model's, some milliseconds later. Runs until killed."""
    from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
    from trajlab.profiles import CLASS_NAMES

    answer = encoder_pb2.ClassifyResponse(
        class_name=CLASS_NAMES[0], probabilities=[1.0 / len(CLASS_NAMES)] * len(CLASS_NAMES), class_names=CLASS_NAMES
    )

    if hold_ms > 0:  # what the hold really takes here (a sleep overshoots): printed before the port
        took = timeit(lambda: time.sleep(hold_ms / 1000.0), 0.0, min_runs=100)
        print(f"{HOLD_TAKES} {float(np.median(took)) * 1e3:.4f}", flush=True)

    class Floor(encoder_pb2_grpc.EncoderServiceServicer):
        def Classify(self, request, context):  # type: ignore[no-untyped-def]
            if hold_ms > 0:
                time.sleep(hold_ms / 1000.0)
            return answer

    _thread_pool_server(Floor()).wait_for_termination()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "bare-grpc":
        bare_grpc_server(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) in (2, 3) and sys.argv[1] == "floor-grpc":
        floor_grpc_server(float(sys.argv[2]) if len(sys.argv) == 3 else 0.0)
    else:
        raise SystemExit("usage: encoder_baselines.py bare-grpc VERSION_DIR CORES | floor-grpc [HOLD_MS]")
