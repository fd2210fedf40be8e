"""The gRPC round trip alone: a clip to a server that answers at once. One run, interleaved rounds.

What a served Classify costs beyond inference has a floor that is not the encoder's: the client
serializing a 196 KB clip, the loopback, the server's receive and hand-off to a handler, and the
answer back. This measures that floor with no model behind it, for two gRPC stacks:

- grpcio (the encoder's): ``encoder_baselines.floor_grpc_server``, the encoder's thread-pool size
  and message limits, answering Classify with a canned response; the client is trajlab's own
  ``EncoderClient`` (retries off, as in ``bench_encoder.py``);
- grpc-js on Node (``bench/grpc_node/floor.js``), server and client, when ``node`` is on the PATH
  and ``npm --prefix bench/grpc_node install`` has been run (otherwise only grpcio is measured).

Each server also runs with its answer held back ``--hold-ms`` (it sleeps, as if a model ran that
long): a round trip that waits on a model is not the round trip of a server that answers at once,
because the threads that carry it sleep in between. Every server is called by every client, in
rounds whose order rotates, so the machine's drift falls on all pairs alike. The table gives each
pair's p50 and its round trip beyond the hold (p50 minus what the server measured its hold to
take: a sleep or timer is never exact); with ``--direct-ms`` (a model's direct
onnxruntime p50, as ``bench_encoder.py`` prints it) also the one-client p50 ratio a server that
added nothing but that round trip would reach.

    .venv/bin/python bench/bench_grpc_floor.py [--seconds 8 --rounds 4] [--hold-ms 0,9.5] [--direct-ms 9.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from encoder_baselines import start_baseline_server, timeit  # noqa: E402  (bench/ is on sys.path)

NODE_DIR = ROOT / "bench" / "grpc_node"
CLIP_SHAPE = (16, 64, 64, 3)  # the bench model's clip: 196,608 bytes


def node_available() -> str | None:
    """Why the Node stack cannot be measured, or None if it can."""
    if shutil.which("node") is None:
        return "node is not on the PATH"
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return f"grpc-js is not installed (npm --prefix {NODE_DIR.relative_to(ROOT)} install)"
    return None


class PythonClient:
    """trajlab's EncoderClient calling Classify back to back."""

    def __init__(self, port: int) -> None:
        from trajlab.clients.encoder import EncoderClient

        self.client = EncoderClient(f"127.0.0.1:{port}", timeout=30, retries=False)
        rng = np.random.default_rng(0)
        clips = rng.integers(0, 256, size=(16, *CLIP_SHAPE), dtype=np.uint8)
        self.requests = [self.client._clip(c, 8.0) for c in clips]
        self._k = 0
        self.run(0.5)  # connected and warm before the clock starts

    def _call(self) -> None:
        self.client.classify(self.requests[self._k % len(self.requests)], branch="b1")
        self._k += 1

    def run(self, seconds: float) -> list[float]:
        return timeit(self._call, seconds, min_runs=1)

    def close(self) -> None:
        self.client.close()


class NodeClient:
    """``floor.js client``: answers each line of seconds with the latencies of its calls."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            ["node", "floor.js", "client", str(port)],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the Node client did not connect")

    def run(self, seconds: float) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{seconds}\n")
        self.proc.stdin.flush()
        return [float(x) for x in json.loads(self.proc.stdout.readline())]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("0\n")
        self.proc.stdin.flush()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per (server, client) pair over all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--hold-ms", default="0,9.5", help="how long each server holds its answer (ms, comma-separated)")
    ap.add_argument("--direct-ms", type=float, default=None, help="a model's direct onnxruntime p50 (ms)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    holds = [float(h) for h in args.hold_ms.split(",") if h.strip()]
    why_not_node = node_available()
    if why_not_node is not None:
        print(f"Node stack not measured: {why_not_node}")
    servers: dict[tuple[str, float], tuple[subprocess.Popen[str], int, float]] = {}
    clients: dict[tuple[str, float, str], Any] = {}
    try:
        for hold in holds:
            baseline = str(ROOT / "bench" / "encoder_baselines.py")
            servers[("grpcio", hold)] = start_baseline_server([sys.executable, baseline, "floor-grpc", str(hold)], ROOT)
            if why_not_node is None:
                servers[("grpc-js", hold)] = start_baseline_server(["node", "floor.js", "server", str(hold)], NODE_DIR)
        for (server, hold), (_proc, port, _took) in servers.items():
            clients[(server, hold, "grpcio")] = PythonClient(port)
            if why_not_node is None:
                clients[(server, hold, "grpc-js")] = NodeClient(port)
        pairs = list(clients)
        lat: dict[tuple[str, float, str], list[float]] = {p: [] for p in pairs}
        per_round: dict[str, list[float]] = {}
        load_start = os.getloadavg()
        chunk = args.seconds / args.rounds
        for rnd in range(args.rounds):
            k = rnd % len(pairs)
            for pair in pairs[k:] + pairs[:k]:
                time.sleep(0.3)
                xs = clients[pair].run(chunk)
                lat[pair] += xs
                per_round.setdefault(f"{pair[0]} server holding {pair[1]:g} ms <- {pair[2]} client", []).append(
                    round(float(np.median(xs)) * 1e3, 3)
                )
        load_end = os.getloadavg()
    finally:
        for c in clients.values():
            c.close()
        for proc, _port, _took in servers.values():
            proc.terminate()
            proc.wait(10)

    print(f"{os.cpu_count()} CPUs; clip {'x'.join(map(str, CLIP_SHAPE))} uint8 (196,608 bytes), answer 4 classes")
    print(
        f"load average (1/5/15 min): {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f} at start, "
        f"{load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f} at end"
    )
    print()
    head = "| server | holds its answer (really takes) | client | calls | p50 ms | p99 ms | round trip beyond the hold, ms |"
    if args.direct_ms:
        head += f" one-client p50 / direct for a {args.direct_ms:g} ms model |"
    print(head)
    print("|---|---:|---|---:|---:|---:|---:|" + ("---:|" if args.direct_ms else ""))
    res: dict[str, Any] = {"load_average_start": load_start, "load_average_end": load_end, "pairs": {}}
    for pair in pairs:
        p50, p99 = (float(np.percentile(lat[pair], q)) * 1e3 for q in (50, 99))
        server, hold, client = pair
        took = servers[(server, hold)][2]
        trip = p50 - took
        row = f"| {server} | {hold:g} ms ({took:.2f}) | {client} | {len(lat[pair])} | {p50:.3f} | {p99:.3f} | {trip:.3f} |"
        if args.direct_ms:
            row += f" {(args.direct_ms + trip) / args.direct_ms:.3f}x |"
        print(row)
        res["pairs"][f"{server}@{hold:g}ms<-{client}"] = {
            "p50_ms": p50,
            "p99_ms": p99,
            "round_trip_ms": trip,
            "calls": len(lat[pair]),
        }
    print("p50 ms per round (noise check):", json.dumps(per_round))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
