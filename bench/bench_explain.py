"""``trajlab explain`` against its two RPCs: one clip through a real encoder and a real describer.

Both servers run as separate processes, as deployed (``python -m services.encoder`` with a tiny
ONNX model that exports its observed track, the contract tests' model; ``python -m
services.describer``, analytic backend). Per repetition, interleaved so load hits all alike:

  (a) Analyze, then Describe on its track, each timed, on clients kept open (the RPCs alone);
  (b) ``trajlab.explain.explain`` on those clients (the chain as a gRPC user runs it);
  (c) the ``trajlab explain CLIP --json`` command's function: reads the clip file, opens both
      channels, ListModels to fit the clip, Analyze, Describe, prints the JSON;
  (c') the same with ``--strict`` (the clip sent as it is: no ListModels to fit it);
  (d) the same through typer (``CliRunner``): (c) plus building the CLI and parsing the
      command line, everything but the interpreter's start and imports.

    PYTHONPATH=. .venv/bin/python bench/bench_explain.py [--reps 40] [--launches 3]

Prints p50/p90 of each, and the ratios p50(b) / (p50(Analyze) + p50(Describe)) and the same
for (c) and (d), from one run (target for (c): <= 1.5). ``--launches N`` also times N whole ``trajlab explain``
processes (interpreter start and imports included) for information.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start(module: str, env_prefix: str, extra: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m <module>`` on a free port; returns the process and its gRPC port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(env_prefix)}
    for var in ("OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        env.pop(var, None)
    env |= {f"{env_prefix}PORT": "0", f"{env_prefix}METRICS_PORT": "-1", **extra}
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    port = None
    for line in proc.stdout:
        m = re.search(r"\(port (\d+)\)|serving on [^\s:]+:(\d+)", line)
        if m:
            port = int(m.group(1) or m.group(2))
            break
    if port is None:
        raise RuntimeError(f"{module} did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain its log
    return proc, port


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def ramp_clip(frames: int, height: int, width: int) -> np.ndarray:
    """Frame k is uniformly 20 + 8k: the tiny model's track moves along a line at constant speed."""
    values = (20 + 8 * np.arange(frames)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (frames, height, width, 3)).copy()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--launches", type=int, default=0, help="also time N whole `trajlab explain` processes")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import grpc
    from typer.testing import CliRunner

    from tests.contract.encoder import kit
    from trajlab.clients.describer import DescriberClient
    from trajlab.clients.encoder import EncoderClient
    from trajlab.clients.health import wait_until_serving
    from trajlab.clipio import save_clip
    from trajlab.explain import _points_to_fit as points_to_fit
    from trajlab.explain import explain
    from trajlab_cli import app
    from trajlab_cli.explain import explain as explain_command

    tmp = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    repo = tmp / "models"
    repo.mkdir()
    model = kit.export_tiny_model(tmp / "track.onnx", seed=2, track=True)
    kit.publish(repo, "b1", model, outputs=kit.metadata("b1")["outputs"] + kit.TRACK_OUTPUT_SPECS)
    clip = ramp_clip(kit.FRAMES, kit.HEIGHT, kit.WIDTH)
    clip_path = save_clip(tmp / "clip.npz", clip, fps=kit.FPS)

    enc_proc, enc_port = start(
        "services.encoder",
        "TRAJLAB_ENCODER_",
        {"TRAJLAB_ENCODER_MODEL_REPO": str(repo), "TRAJLAB_ENCODER_INTRA_OP_THREADS": "1"},
    )
    desc_proc, desc_port = start("services.describer", "TRAJLAB_DESCRIBER_", {})
    enc_target, desc_target = f"127.0.0.1:{enc_port}", f"127.0.0.1:{desc_port}"
    cli_args = [
        "explain", str(clip_path), "--target", enc_target, "--describer", desc_target,
        "--branch", "b1", "--backend", "analytic", "--json",
    ]  # fmt: skip
    analyze_ms: list[float] = []
    describe_ms: list[float] = []
    chain_ms: list[float] = []
    command_ms: list[float] = []
    cli_ms: list[float] = []
    strict_ms: list[float] = []
    # The `trajlab explain` command's own function, with the values typer would pass.
    command_kwargs = dict(
        clip=clip_path, target=enc_target, describer=desc_target, branch="b1", version=0, backend="analytic",
        as_json=True, plot=None, min_confidence=0.3, timeout=30.0, key=None, index=0, fps=0.0, strict=False,
    )  # fmt: skip
    runner = CliRunner()
    try:
        with EncoderClient(enc_target) as enc, DescriberClient(desc_target) as desc:
            enc.wait_until_serving(120)
            with grpc.insecure_channel(desc_target) as ch:
                wait_until_serving(ch, what=f"describer at {desc_target}", timeout=60)
            for rep in range(args.warmup + args.reps):
                t0 = time.perf_counter()
                a = enc.analyze(clip, branch="b1", fps=kit.FPS, timeout=10)
                t1 = time.perf_counter()
                points, times, _ = points_to_fit(a, 0.3, [])  # the frames explain() fits
                d = desc.describe(
                    points,
                    times,
                    forecast=a.forecast.positions,
                    forecast_times=a.forecast.times,
                    predicted_class=a.classification.class_name,
                    backend="analytic",
                    branch="b1",
                    timeout=30,
                )
                t2 = time.perf_counter()
                ex = explain(enc, desc, clip, fps=kit.FPS, branch="b1", backend="analytic")
                t3 = time.perf_counter()
                t3 = time.perf_counter()
                if os.environ.get("BENCH_PROFILE") and rep == args.warmup:
                    import cProfile
                    import pstats

                    prof = cProfile.Profile()
                    prof.enable()
                    res = runner.invoke(app, cli_args)
                    prof.disable()
                    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
                t3 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()) as printed:
                    explain_command(**command_kwargs)
                t4 = time.perf_counter()
                res = runner.invoke(app, cli_args)
                t5 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    explain_command(**{**command_kwargs, "strict": True})
                t6 = time.perf_counter()
                if res.exit_code != 0 or not printed.getvalue().startswith("{"):
                    raise RuntimeError(f"trajlab explain failed: {res.output}")
                assert d.equations and ex.described.equations
                if rep >= args.warmup:
                    analyze_ms.append((t1 - t0) * 1e3)
                    describe_ms.append((t2 - t1) * 1e3)
                    chain_ms.append((t3 - t2) * 1e3)
                    command_ms.append((t4 - t3) * 1e3)
                    cli_ms.append((t5 - t4) * 1e3)
                    strict_ms.append((t6 - t5) * 1e3)
        launch_ms = []
        for _ in range(args.launches):
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from trajlab_cli import main; sys.exit(main())",
                    *cli_args,
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            launch_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        stop(enc_proc)
        stop(desc_proc)

    direct = pct(analyze_ms, 50) + pct(describe_ms, 50)
    out = {
        "reps": args.reps,
        "analyze_p50_ms": pct(analyze_ms, 50),
        "describe_p50_ms": pct(describe_ms, 50),
        "direct_sum_p50_ms": direct,
        "explain_chain_p50_ms": pct(chain_ms, 50),
        "explain_chain_p90_ms": pct(chain_ms, 90),
        "explain_command_p50_ms": pct(command_ms, 50),
        "explain_command_p90_ms": pct(command_ms, 90),
        "ratio_command": pct(command_ms, 50) / direct,
        "explain_strict_p50_ms": pct(strict_ms, 50),
        "ratio_strict": pct(strict_ms, 50) / direct,
        "explain_cli_p50_ms": pct(cli_ms, 50),
        "explain_cli_p90_ms": pct(cli_ms, 90),
        "ratio_chain": pct(chain_ms, 50) / direct,
        "ratio_cli": pct(cli_ms, 50) / direct,
        "launch_ms": launch_ms,
        "cores": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
    print(
        f"clip {kit.FRAMES}x{kit.HEIGHT}x{kit.WIDTH} (tiny track model), describer analytic, {args.reps} reps"
    )
    print(
        f"  Analyze p50 {out['analyze_p50_ms']:.2f} ms, Describe p50 {out['describe_p50_ms']:.2f} ms, sum {direct:.2f} ms"
    )
    print(
        f"  explain() chain p50 {out['explain_chain_p50_ms']:.2f} ms (p90 {out['explain_chain_p90_ms']:.2f}), "
        f"ratio {out['ratio_chain']:.2f}x"
    )
    print(
        f"  `trajlab explain --json` command p50 {out['explain_command_p50_ms']:.2f} ms "
        f"(p90 {out['explain_command_p90_ms']:.2f}), ratio {out['ratio_command']:.2f}x  (target <= 1.5x)"
    )
    print(
        f"  ... with --strict (no ListModels, the clip sent as it is) p50 {out['explain_strict_p50_ms']:.2f} ms, "
        f"ratio {out['ratio_strict']:.2f}x"
    )
    print(
        f"  ... with typer parsing the command line p50 {out['explain_cli_p50_ms']:.2f} ms "
        f"(p90 {out['explain_cli_p90_ms']:.2f}), ratio {out['ratio_cli']:.2f}x"
    )
    if launch_ms:
        print(
            f"  whole `trajlab explain` processes: {', '.join(f'{v:.0f}' for v in launch_ms)} ms (interpreter start included)"
        )
    print(f"  load average (1 min) {out['load_avg_1m']:.1f} on {out['cores']} cores")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
