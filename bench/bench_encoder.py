"""Encoder benchmark: onnxruntime vs PyTorch, serving overhead, dynamic batching. One run, ratios.

Model: the trainer's b1 builder (I3D-like 3D CNN 16/32/64 + compression) on 16x64x64 RGB
clips when ``services.trainer`` is importable, else a stand-in of the same shape.
The server runs as a separate process (``python -m services.encoder``), as deployed,
so client threads and server do not share a GIL; both share the machine's cores.
"Direct" is onnxruntime in a process of its own with the server's own session (loaded by
``services.encoder.runtime.load_session``: same SessionOptions, same warm-up), so the two
differ only by the serving path; the bench prints those options and stops if a server
reports another intra-op thread count. A third baseline runs the encoder's own code
(``EncoderServicer.Classify`` with request parsing and response serialization) in-process
without gRPC, which splits the serving overhead into the encoder's code and gRPC's; a fourth,
grpcio's own server around the same session with none of the encoder's code (``bare-grpc``), is
measured like the servers: the floor any Python gRPC server pays, under the encoder's figures
(``bench/encoder_baselines.py``).

    .venv/bin/python bench/bench_encoder.py [--seconds 6 --rounds 3] [--model b1|small] [--json out.json]
        [--servers 'label:KEY=VALUE+KEY=VALUE,...']

``--servers`` serves variants of the server's settings (``TRAJLAB_ENCODER_<KEY>``) beside the
default in the same rounds, and prints every configuration's ratios to direct onnxruntime: how a
change of layout is judged against the current default in one run. A variant may set its own
``INTRA_OP_THREADS``; every other server must use direct's thread count.

Prints every figure, the load average, and the ratios issue 25 sets targets for, each
with whether it is met, for the server started with its default settings: Classify p50
over gRPC <= 1.10x direct at 1 client; 8-client throughput >= 90 % of direct; p99 at 8
clients <= 1.5x its p50; no failed call. The other batching modes are served alongside
for the comparison the default was chosen from.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from encoder_baselines import direct_worker, in_process_worker, start_baseline_server, timeit  # noqa: E402  (bench/ is on sys.path)

T, H, W, C = 16, 64, 64, 3  # clip shape (frames, height, width, channels)


def build_model(which: str) -> tuple[Any, str]:
    """(torch module returning probabilities/forecast/embedding, description)."""
    import torch
    from torch import nn

    if which not in ("b1", "small") and not which.startswith("zoo:"):
        raise SystemExit(f"--model: expected b1, small or zoo:<encoder>, got {which!r}")
    if which == "b1":
        from services.trainer.branch import ExportWrapper, create_b1

        model = ExportWrapper(create_b1(frames=T, height=H, width=W)).eval()
        return model, "services.trainer create_b1 (I3D-like 16/32/64 + compression)"
    if which.startswith("zoo:"):  # a standard backbone of the zoo in a plain branch (no track, no enhancement)
        from services.trainer.branch import ExportWrapper, create_branch_model
        from services.trainer.model_args import ModelArgs

        name = which.split(":", 1)[1]
        args = ModelArgs(encoder=name, enhancement="none", track=False, frames=T, height=H, width=W, horizon=4)
        return ExportWrapper(create_branch_model(args)).eval(), f"zoo encoder {name} + heads (no track)"

    class StandIn(nn.Module):  # three conv3d blocks 16/32/64, like the trainer's I3D
        def __init__(self) -> None:
            super().__init__()

            def block(i: int, o: int, pool: tuple[int, int, int]) -> nn.Sequential:
                return nn.Sequential(
                    nn.Conv3d(i, o, 3, padding=1), nn.BatchNorm3d(o), nn.ReLU(), nn.MaxPool3d(pool)
                )

            self.f = nn.Sequential(
                block(3, 16, (1, 2, 2)), block(16, 32, (2, 2, 2)), block(32, 64, (2, 2, 2))
            )
            self.proj = nn.Linear(64 * 4 * 8 * 8, 128)
            self.cls = nn.Linear(128, 4)
            self.fc = nn.Linear(128, 12)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            e = self.proj(self.f(x).flatten(1))
            return torch.softmax(self.cls(e), -1), self.fc(e).reshape(-1, 4, 3), e

    return StandIn().eval(), "stand-in I3D-like (16/32/64)"


def export(model: Any, path: Path) -> None:
    import torch

    if hasattr(model, "model"):  # the trainer's ExportWrapper: export as the trainer does
        from services.trainer.export import export_onnx

        export_onnx(model.model, path, torch.zeros(2, C, T, H, W))
        return
    torch.onnx.export(
        model,
        (torch.zeros(2, C, T, H, W),),
        str(path),
        input_names=["clip"],
        output_names=["probabilities", "forecast", "embedding"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        dynamo=True,
        external_data=False,
    )


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds a process has used (Linux /proc): robust to a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def grpc_core_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process's gRPC core threads (named ``event_engine``: sockets, HTTP/2).

    From each thread's schedstat (nanoseconds on CPU): a thread's ``stat`` counts whole clock
    ticks, too coarse for a fraction of a millisecond per call."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() != "event_engine":
                continue
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:  # the thread ended
            continue
    return total / 1e9


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


SERVER_INTRA_OP_THREADS: dict[str, int] = {}  # what each started server says it uses (its start line)


def start_server(
    repo: Path, batching: str | None, extra: dict[str, str] | None = None, label: str = ""
) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m services.encoder``; ``batching`` None keeps the server's default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJLAB_ENCODER_")}
    env |= {
        "TRAJLAB_ENCODER_PORT": "0",
        "TRAJLAB_ENCODER_METRICS_PORT": "-1",
        "TRAJLAB_ENCODER_MODEL_REPO": str(repo),
        "TRAJLAB_ENCODER_LOG_LEVEL": "INFO",
        **({} if batching is None else {"TRAJLAB_ENCODER_BATCHING": batching}),
        **(extra or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.encoder"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    port = None
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"encoder on port (\d+): .*intra-op threads (\d+)", line)
        if m:
            port = int(m.group(1))
            SERVER_INTRA_OP_THREADS[label] = int(m.group(2))
            break
    if port is None:
        raise RuntimeError("encoder did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain its log
    from trajlab.clients.encoder import EncoderClient

    with EncoderClient(f"127.0.0.1:{port}") as enc:
        enc.wait_until_serving(120)
    return proc, port


BARE = "bare-grpc"  # grpcio alone around the same session (encoder_baselines.bare_grpc_server)


def start_bare_server(version_dir: Path, cores: int) -> tuple[subprocess.Popen[str], int]:
    """Start the bare grpcio baseline server in a process of its own; (process, port)."""
    baseline = str(ROOT / "bench" / "encoder_baselines.py")
    proc, port, _hold = start_baseline_server([sys.executable, baseline, BARE, str(version_dir), str(cores)], ROOT)
    SERVER_INTRA_OP_THREADS[BARE] = cores
    return proc, port


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


SETTLE_SECONDS = 0.5  # between configurations: the previous one's threads wind down first


def server_label(mode: str, default_mode: str) -> str:
    if mode == "default":
        return f"{default_mode} (default)"
    return f"{BARE} (grpcio alone, no encoder code)" if mode == BARE else mode


def round_order(configs: list[tuple[str, int]], rnd: int) -> list[tuple[str, int]]:
    """The configurations of round ``rnd``: fewest clients first, each client count's servers in an
    order rotated by one every round, so no configuration always follows a heavy one (a server
    measured right after an 8-client phase ran slower than one measured after a 1-client phase)."""
    out = []
    for n in sorted({c for _m, c in configs}):
        group = [c for c in configs if c[1] == n]
        k = rnd % len(group)
        out += group[k:] + group[:k]
    return out


def parse_servers(spec: str) -> dict[str, dict[str, str]]:
    """'label:KEY=V+KEY=V,...' -> {label: {TRAJLAB_ENCODER_KEY: V}} (server variants to compare)."""
    out: dict[str, dict[str, str]] = {}
    for item in filter(None, spec.split(",")):
        label, _, pairs = item.partition(":")
        env = {}
        for pair in filter(None, pairs.split("+")):
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise SystemExit(f"--servers: expected label:KEY=VALUE+KEY=VALUE, got {item!r}")
            env[f"TRAJLAB_ENCODER_{key.upper()}"] = value
        if not label or label in ("default", "direct", "in-process", BARE):
            raise SystemExit(f"--servers: {item!r} needs a label of its own")
        out[label] = env
    return out


def load_test(port: int, clips: np.ndarray, concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` client threads, each with its own channel, calling Classify back to back."""
    from trajlab.clients.encoder import EncoderClient

    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0]
    start_evt = threading.Event()

    def worker(i: int) -> None:
        with EncoderClient(f"127.0.0.1:{port}", timeout=30, retries=False) as enc:
            reqs = [enc._clip(c, 8.0) for c in clips]
            enc.classify(reqs[0], branch="b1")  # connect before the clock starts
            start_evt.wait()
            end = time.perf_counter() + seconds
            k = i
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    enc.classify(reqs[k % len(reqs)], branch="b1")
                except Exception:
                    errors[0] += 1
                lat[i].append(time.perf_counter() - t0)
                k += 1

    with ThreadPoolExecutor(concurrency) as pool:
        futs = [pool.submit(worker, i) for i in range(concurrency)]
        time.sleep(0.5)
        t0 = time.perf_counter()
        start_evt.set()
        for f in futs:
            f.result()
        wall = time.perf_counter() - t0
    return {"lat": [x for xs in lat for x in xs], "wall": wall, "errors": errors[0]}


def torch_phase(out: Path, secs: float, which: str) -> None:
    """In its own process: build and export the model, then time onnxruntime and PyTorch eager."""
    import onnxruntime as ort
    import torch

    from services.encoder.runtime import SessionConfig, cpu_count, session_options
    from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD, to_model_input

    torch.set_num_threads(cpu_count())
    model, desc = build_model(which)
    onnx_path = out.parent / "model.onnx"
    export(model, onnx_path)
    sess = ort.InferenceSession(
        str(onnx_path),
        sess_options=session_options(SessionConfig(intra_op_threads=cpu_count())),
        providers=["CPUExecutionProvider"],
    )
    clips = np.random.default_rng(0).integers(0, 256, size=(8, T, H, W, C), dtype=np.uint8)
    res: dict[str, Any] = {"model": desc, "onnx": str(onnx_path), "torch": torch.__version__}
    xs = {bs: to_model_input(clips[:bs], DEFAULT_MEAN, DEFAULT_STD) for bs in (1, 8)}
    res["embedding_dim"] = int(sess.run(None, {"clip": xs[1]})[2].shape[1])
    # onnxruntime first: PyTorch's OpenMP threads keep spinning after eager runs and
    # would slow whatever runs next on these 2 cores.
    for bs, x in xs.items():
        for _ in range(3):
            sess.run(None, {"clip": x})
        res[f"ort_b{bs}_ms"] = statistics.median(timeit(lambda x=x: sess.run(None, {"clip": x}), secs)) * 1e3
    for bs, x in xs.items():
        xt = torch.from_numpy(x)

        def eager(xt: torch.Tensor = xt) -> None:
            with torch.inference_mode():
                model(xt)

        for _ in range(3):
            eager()
        res[f"torch_b{bs}_ms"] = statistics.median(timeit(eager, secs)) * 1e3
    out.write_text(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds per configuration (over all rounds)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds the seconds are split into")
    ap.add_argument(
        "--model",
        default="b1",
        help="b1: the trainer's create_b1; small: a lighter stand-in, where serving overhead shows most; "
        "zoo:<encoder>: a standard backbone (zoo:r3d, zoo:videomae, ...) with the heads",
    )
    ap.add_argument(
        "--modes",
        default="off,window,adaptive",
        help="batching modes to serve besides the default (comma-separated)",
    )
    ap.add_argument(
        "--servers",
        default="",
        help="server variants to serve beside the default, with the default batching: comma-separated "
        "label:KEY=VALUE+KEY=VALUE, keys of TRAJLAB_ENCODER_* without the prefix, e.g. "
        "'asyncio:GRPC_SERVER=asyncio,threads:GRPC_SERVER=threads'",
    )
    ap.add_argument("--clients", default="1,4,8", help="client counts (1 and 8 are always measured)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--torch-phase", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    secs = args.seconds
    if args.torch_phase is not None:
        torch_phase(args.torch_phase, secs, args.model)
        return

    import onnxruntime as ort

    from services.encoder.runtime import cpu_count
    from trajlab.modelrepo import publish_version
    from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD
    from trajlab.profiles import CLASS_NAMES

    cores = cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="bench-encoder-"))
    # 1. Model export and onnxruntime vs PyTorch eager, in a child process, so that this
    # process (the "direct onnxruntime" baseline) has no torch loaded, like the server.
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--seconds",
            str(secs),
            "--model",
            args.model,
            "--torch-phase",
            str(tmp / "torch.json"),
        ],
        check=True,
    )
    res: dict[str, Any] = {"cores": cores, "clip": [T, H, W, C], "onnxruntime": ort.__version__}
    res.update(json.loads((tmp / "torch.json").read_text()))
    print(
        f"model: {res['model']}; clip {T}x{H}x{W}x{C}; {cores} cores; onnxruntime {ort.__version__}, torch {res['torch']}"
    )
    onnx_path = Path(res["onnx"])
    metadata = {
        "branch": "b1",
        "branch_config": {"name": "b1"},
        "profile": "bench",
        "input": {
            "name": "clip",
            "layout": "NCTHW",
            "frames": T,
            "height": H,
            "width": W,
            "channels": C,
            "dtype": "float32",
            "mean": list(DEFAULT_MEAN),
            "std": list(DEFAULT_STD),
        },
        "class_names": list(CLASS_NAMES),
        "outputs": [
            {"name": "probabilities", "shape": ["batch", 4]},
            {"name": "forecast", "shape": ["batch", 4, 3]},
            {"name": "embedding", "shape": ["batch", "D"]},
        ],
        "forecast_horizon": 4,
        "fps": 8.0,
        "embedding_dim": res["embedding_dim"],
        "opset": 18,
        "framework": "torch",
        "validation_metrics": {},
        "dataset_manifest_sha256": "0" * 64,
    }
    repo = tmp / "models"
    _version, version_dir = publish_version(repo, "b1", onnx_path, metadata)
    clips = np.random.default_rng(0).integers(0, 256, size=(16, T, H, W, C), dtype=np.uint8)

    # 2. Direct onnxruntime as a user would call it (preprocess + run, batch 1) in a
    # process of its own like the server's, and the served model at 1..16 clients: one
    # server with the default settings (no batching variable set: what `make run` and
    # compose use) and one per other batching mode asked for. All servers run at once
    # (idle ones use no CPU: spinning is off) and the measurements are interleaved in
    # rounds, so load from other work on this shared machine falls on every
    # configuration alike instead of on whichever ran at a bad moment.
    import multiprocessing as mp

    from services.encoder.settings import EncoderSettings

    default_mode = str(EncoderSettings.model_fields["batching"].default)
    modes = ["default", *(m for m in args.modes.split(",") if m and m != default_mode)]
    variants = parse_servers(args.servers)
    modes += list(variants)
    clients = [int(n) for n in args.clients.split(",")]
    for need in (1, 8):
        if need not in clients:
            clients.append(need)
    clients.sort()
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    worker = ctx.Process(
        target=direct_worker, args=(there, str(version_dir), cores, (T, H, W, C)), daemon=True
    )
    worker.start()
    res["session"] = here.recv()
    # The encoder's code without gRPC (see in_process_worker): splits the serving overhead.
    here_ip, there_ip = ctx.Pipe()
    in_process = ctx.Process(
        target=in_process_worker, args=(there_ip, str(repo), cores, (T, H, W, C)), daemon=True
    )
    in_process.start()
    assert here_ip.recv() == "ready"
    workers = {"direct": (worker, here), "in-process": (in_process, here_ip)}
    res["load_average_start"] = os.getloadavg()
    servers = {
        m: start_server(repo, None, variants[m], m)
        if m in variants
        else start_server(repo, None if m == "default" else m, label=m)
        for m in modes
    }
    # grpcio alone around the same session, measured like the servers: the floor under the
    # encoder's served figures that any Python gRPC server pays.
    servers[BARE] = start_bare_server(version_dir, cores)
    modes.append(BARE)
    # A variant may set its own thread layout (TRAJLAB_ENCODER_INTRA_OP_THREADS); every other
    # server must use direct's, or the comparison is not like for like.
    own_layout = {m for m, env in variants.items() if "TRAJLAB_ENCODER_INTRA_OP_THREADS" in env}
    wrong = {
        m: SERVER_INTRA_OP_THREADS[m]
        for m in modes
        if m not in own_layout and SERVER_INTRA_OP_THREADS[m] != cores
    }
    if wrong:
        raise SystemExit(
            f"servers {wrong} report other intra-op thread counts than direct's {cores}: "
            "not a like-for-like comparison"
        )
    configs = [("direct", 1), ("in-process", 1)] + [(m, n) for m in modes for n in clients]
    lat: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    busy: dict[tuple[str, int], float] = dict.fromkeys(configs, 0.0)
    count: dict[tuple[str, int], int] = dict.fromkeys(configs, 0)
    cpu: dict[tuple[str, int], float] = dict.fromkeys(configs, 0.0)  # CPU s of the answering process
    core_cpu: dict[tuple[str, int], float] = dict.fromkeys(configs, 0.0)  # of which gRPC core threads
    chunk = secs / args.rounds
    rounds: dict[str, list[float]] = {}  # p50 ms of each round, to see the machine's noise
    res["p50_ms_per_round"] = rounds
    tails: dict[str, list[float]] = {}  # p99/p50 within each round: the tail without the drift between rounds
    res["p99_over_p50_per_round"] = tails
    res["errors"] = 0
    try:
        for rnd in range(args.rounds):
            for mode, n in round_order(configs, rnd):
                time.sleep(SETTLE_SECONDS)
                pid = workers[mode][0].pid if mode in workers else servers[mode][0].pid
                assert pid is not None
                cpu0, core0 = cpu_seconds(pid), grpc_core_cpu_seconds(pid)
                if mode in workers:
                    workers[mode][1].send(chunk)
                    xs_lat = workers[mode][1].recv()
                    lat[(mode, n)] += xs_lat
                    rounds.setdefault(f"{mode}@{n}", []).append(round(pct(xs_lat, 50) * 1e3, 1))
                    busy[(mode, n)] += sum(xs_lat)
                    count[(mode, n)] += len(xs_lat)
                else:
                    r = load_test(servers[mode][1], clips, n, chunk)
                    lat[(mode, n)] += r["lat"]
                    rounds.setdefault(f"{mode}@{n}", []).append(round(pct(r["lat"], 50) * 1e3, 1))
                    tails.setdefault(f"{mode}@{n}", []).append(pct(r["lat"], 99) / pct(r["lat"], 50))
                    busy[(mode, n)] += r["wall"]
                    count[(mode, n)] += len(r["lat"])
                    res["errors"] += r["errors"]
                cpu[(mode, n)] += cpu_seconds(pid) - cpu0
                core_cpu[(mode, n)] += grpc_core_cpu_seconds(pid) - core0
    finally:
        for proc, _port in servers.values():
            stop_server(proc)
        for proc_w, pipe in workers.values():
            pipe.send(None)
            proc_w.join(10)
    res["load_average_end"] = os.getloadavg()
    summary = {
        f"{m}@{n}": {
            "throughput": count[(m, n)] / busy[(m, n)],
            "p50_ms": pct(lat[(m, n)], 50) * 1e3,
            "p99_ms": pct(lat[(m, n)], 99) * 1e3,
            "cpu_ms_per_clip": cpu[(m, n)] / count[(m, n)] * 1e3,
            "grpc_core_cpu_ms_per_clip": core_cpu[(m, n)] / count[(m, n)] * 1e3,
        }
        for m, n in configs
    }
    res["served"] = summary
    res["default_batching"] = default_mode
    d, one, eight = summary["direct@1"], summary["default@1"], summary["default@8"]
    res["direct_p50_ms"], res["direct_throughput"] = d["p50_ms"], d["throughput"]
    res["ratio_p50_grpc_vs_direct"] = one["p50_ms"] / d["p50_ms"]
    res["ratio_tput8_vs_direct"] = eight["throughput"] / d["throughput"]
    res["ratio_p99_vs_p50_at_8"] = eight["p99_ms"] / eight["p50_ms"]
    res["ratio_p99_vs_p50_at_8_round_median"] = statistics.median(tails["default@8"])
    res["ratio_cpu_per_clip_served1_vs_direct"] = one["cpu_ms_per_clip"] / d["cpu_ms_per_clip"]
    res["ratio_cpu_per_clip_served8_vs_direct"] = eight["cpu_ms_per_clip"] / d["cpu_ms_per_clip"]
    ip = summary["in-process@1"]
    res["ratio_cpu_per_clip_in_process_vs_direct"] = ip["cpu_ms_per_clip"] / d["cpu_ms_per_clip"]

    print()
    for bs in (1, 8):
        o, p = res[f"ort_b{bs}_ms"], res[f"torch_b{bs}_ms"]
        print(
            f"batch {bs}: onnxruntime {o:.2f} ms, PyTorch eager {p:.2f} ms -> onnxruntime {p / o:.2f}x faster"
        )
    print(
        f"onnxruntime session, direct and served alike (services.encoder.runtime.load_session): {res['session']}"
    )
    print(
        f"direct onnxruntime (preprocess + run, batch 1): p50 {d['p50_ms']:.2f} ms, {d['throughput']:.1f} clips/s, "
        f"{d['cpu_ms_per_clip']:.1f} CPU-ms per clip"
    )
    la0, la1 = res["load_average_start"], res["load_average_end"]
    print(
        f"load average (1/5/15 min): {la0[0]:.2f}/{la0[1]:.2f}/{la0[2]:.2f} at start, {la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f} at end"
    )
    print()
    print(
        "| server (batching or variant) | clients | clips/s | vs direct | p50 ms | p99 ms | p99/p50 | server CPU-ms per clip "
        "| of which gRPC core threads |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m, n in configs[2:]:
        r = summary[f"{m}@{n}"]
        label = server_label(m, default_mode)
        print(
            f"| {label} | {n} | {r['throughput']:.1f} | {r['throughput'] / d['throughput']:.0%} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['p99_ms'] / r['p50_ms']:.2f} | {r['cpu_ms_per_clip']:.1f} "
            f"| {r['grpc_core_cpu_ms_per_clip']:.1f} |"
        )
    print(f"failed calls: {res['errors']}")
    print()
    print("Ratios to direct onnxruntime, every server configuration (same run):")
    print(
        "| server | p50 gRPC / direct, 1 client | clips/s at 8 / direct | p99/p50 at 8 | CPU per clip / direct, 1 / 8 |"
    )
    print("|---|---:|---:|---:|---:|")
    ratios: dict[str, dict[str, float]] = {}
    for m in modes:
        a, b = summary[f"{m}@1"], summary[f"{m}@8"]
        ratios[m] = r = {
            "p50_1": a["p50_ms"] / d["p50_ms"],
            "tput_8": b["throughput"] / d["throughput"],
            "tail_8": b["p99_ms"] / b["p50_ms"],
            "cpu_1": a["cpu_ms_per_clip"] / d["cpu_ms_per_clip"],
            "cpu_8": b["cpu_ms_per_clip"] / d["cpu_ms_per_clip"],
        }
        label = server_label(m, default_mode)
        print(
            f"| {label} | {r['p50_1']:.3f}x | {r['tput_8']:.1%} | {r['tail_8']:.2f} | {r['cpu_1']:.2f}x / {r['cpu_8']:.2f}x |"
        )
    res["ratios_by_server"] = ratios
    print("p50 ms per round (noise check):", json.dumps(rounds))
    print("p99/p50 per round:", json.dumps({k: [round(v, 2) for v in vs] for k, vs in tails.items()}))
    print()
    layout = EncoderSettings.model_fields["intra_op_layout"].default
    print(f"Targets, default settings (batching {default_mode}, {layout} layout):")
    targets = [
        (
            "Classify p50 over gRPC / direct onnxruntime, 1 client",
            f"{res['ratio_p50_grpc_vs_direct']:.3f}x",
            "<= 1.10x",
            res["ratio_p50_grpc_vs_direct"] <= 1.10,
        ),
        (
            "throughput at 8 clients / direct",
            f"{res['ratio_tput8_vs_direct']:.1%}",
            ">= 90 %",
            res["ratio_tput8_vs_direct"] >= 0.90,
        ),
        (
            "p99 / p50 at 8 clients, all rounds pooled",
            f"{res['ratio_p99_vs_p50_at_8']:.2f}x",
            "<= 1.5x",
            res["ratio_p99_vs_p50_at_8"] <= 1.5,
        ),
        (
            "p99 / p50 at 8 clients, median of the rounds' own (without the load's drift between rounds)",
            f"{res['ratio_p99_vs_p50_at_8_round_median']:.2f}x",
            "<= 1.5x",
            res["ratio_p99_vs_p50_at_8_round_median"] <= 1.5,
        ),
        ("failed calls", str(res["errors"]), "0", res["errors"] == 0),
    ]
    for name, value, target, ok in targets:
        print(f"  {name}: {value} (target {target}) -> {'met' if ok else 'NOT met'}")
    res["targets_met"] = {name: ok for name, _v, _t, ok in targets}
    print(
        f"server CPU per clip / direct CPU per clip: {res['ratio_cpu_per_clip_served1_vs_direct']:.3f}x at 1 client, "
        f"{res['ratio_cpu_per_clip_served8_vs_direct']:.3f}x at 8 (the load-independent serving overhead)"
    )
    print(
        f"the encoder's code path without gRPC (in-process Classify: parse, decode, preprocess, batching, run, "
        f"metrics, serialize), 1 caller: p50 {ip['p50_ms']:.2f} ms, {ip['cpu_ms_per_clip']:.1f} CPU-ms per clip, "
        f"{res['ratio_cpu_per_clip_in_process_vs_direct']:.3f}x direct; the rest of the served overhead is gRPC's"
    )
    bare = ratios[BARE]
    res["ratio_p50_default_vs_bare_grpc"] = one["p50_ms"] / summary[f"{BARE}@1"]["p50_ms"]
    res["ratio_tput8_default_vs_bare_grpc"] = eight["throughput"] / summary[f"{BARE}@8"]["throughput"]
    print(
        f"grpcio alone around the same session (no encoder code; {BARE}): p50 {bare['p50_1']:.3f}x direct at 1 "
        f"client, {bare['tput_8']:.1%} of direct's clips/s at 8; the encoder's default against it: p50 "
        f"{res['ratio_p50_default_vs_bare_grpc']:.3f}x at 1 client, clips/s {res['ratio_tput8_default_vs_bare_grpc']:.1%} at 8"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
