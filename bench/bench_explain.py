"""``trajlab explain`` against its two RPCs: one clip through a real encoder and a real describer.

Both servers run as separate processes, as deployed (``python -m services.encoder`` with a tiny
ONNX model that exports its observed track, the contract tests' model; ``python -m
services.describer``, analytic backend). Per repetition, interleaved so load hits all alike
(each repetition starts with the next variant, and a 30 ms pause comes before each, so no
variant borrows the connection a closed channel of the one before still holds):

  (a) Analyze, then Describe on its track, each timed, on clients kept open (the RPCs alone);
  (b) ``trajlab.explain.explain`` on those clients (the chain as a gRPC user runs it);
  (c) the ``trajlab explain CLIP --json`` command's function: reads the clip file, opens both
      channels, Analyze with the clip as it is (``trajlab.analyze_fitted``: no ListModels for a
      clip already in the model's shape), Describe, prints the JSON;
  (c0) the command's earlier path, for comparison in the same run: ListModels to fit the
      clip first (``trajlab_cli.encoder._prepare``, still classify's and forecast's), then
      Analyze and Describe;
  (c') the same with ``--strict`` (the clip sent as it is, with its fps);
  (c'') (c) while other clients with the command's channel settings are connected: gRPC then
      lends their connections to the command's channels (earlier runs of this bench measured
      (c) so), which shows what the two fresh connections cost;
  (d) the same through typer (``CliRunner``): (c) plus building the CLI and parsing the
      command line, everything but the interpreter's start and imports.

    PYTHONPATH=. .venv/bin/python bench/bench_explain.py [--reps 40] [--launches 8] [--baseline REV]

Prints p50/p90 of each, and the ratios p50(b) / (p50(Analyze) + p50(Describe)) and the same
for (c), (c0), (c'), (c'') and (d), from one run (target for (c): <= 1.5). ``--launches N`` also
times whole processes, interleaved per round: ``python -c pass`` (the interpreter alone) and
``python -m trajlab_cli explain CLIP --json`` from this tree, and with ``--baseline REV`` the
same command from the tree at git revision REV (exported with ``git archive``, this tree's
generated gRPC stubs copied in), so start-up before and after is a ratio from one run; both
trees are byte-compiled first, as an installed package is.
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
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAUSE_SECONDS = 0.03  # between variants, untimed (see the loop)
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


def export_tree(rev: str, into: Path) -> Path:
    """The tree at git revision ``rev`` in ``into``, with this tree's generated gRPC stubs."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for stub in (ROOT / "trajlab").rglob("*_pb2*.py"):
        dest = into / stub.relative_to(ROOT)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(stub.read_bytes())
            for init in (dest.parent / "__init__.py", dest.parent.parent / "__init__.py"):
                init.touch()
    return into


def time_launches(n: int, baseline: str, cli_args: list[str], tmp: Path) -> dict[str, list[float]]:
    """Wall ms of whole processes, interleaved per round: the interpreter alone, this tree's
    `trajlab explain`, and the baseline revision's (when given)."""
    trees = {"this tree": ROOT}
    if baseline and n:
        trees[f"at {baseline}"] = export_tree(baseline, tmp / "baseline")
    for tree in trees.values():  # as an installed package has it (PYTHONDONTWRITEBYTECODE may be set)
        compile_all = [sys.executable, "-m", "compileall", "-q", "trajlab", "trajlab_cli"]
        subprocess.run(compile_all, cwd=tree, check=True, capture_output=True)
    runs: dict[str, list[str]] = {"python -c pass": [sys.executable, "-c", "pass"]}
    runs |= {name: [sys.executable, "-m", "trajlab_cli", *cli_args] for name in trees}
    out: dict[str, list[float]] = {name: [] for name in runs}
    for launch in range(n + 1):  # the first round is untimed: it warms the file cache for all
        for name, argv in runs.items():
            cwd = trees.get(name, ROOT)
            env = {**os.environ, "PYTHONPATH": str(cwd)}
            t0 = time.perf_counter()
            done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
            if launch:
                out[name].append((time.perf_counter() - t0) * 1e3)
            if done.returncode != 0 or (name != "python -c pass" and not done.stdout.startswith("{")):
                raise RuntimeError(f"{name}: `trajlab explain` failed: {done.stderr[-2000:]}")
    return out


def report_launches(out: dict, launch_ms: dict[str, list[float]]) -> None:
    if not any(launch_ms.values()):
        return
    p50 = {k: pct(v, 50) for k, v in launch_ms.items()}
    print(f"  whole processes, {len(launch_ms['python -c pass'])} launches each, interleaved (p50 wall):")
    for name, ms in p50.items():
        print(f"    {name}: {ms:.0f} ms")
    this = p50["this tree"]
    print(f"    this tree's process / its in-process command: {this / out['explain_command_p50_ms']:.0f}x")
    for name, ms in p50.items():
        if name.startswith("at "):
            print(
                f"    this tree / {name}: {this / ms:.2f}x (beyond the bare interpreter: "
                f"{(this - p50['python -c pass']) / (ms - p50['python -c pass']):.2f}x)"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--launches", type=int, default=0, help="also time N whole `trajlab explain` processes")
    ap.add_argument("--baseline", default="", help="git revision whose `trajlab explain` process to time too")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import grpc
    from typer.testing import CliRunner

    from tests.contract.encoder import kit
    from trajlab.clients._channel import DEFAULT_MAX_MESSAGE_BYTES
    from trajlab.clients.describer import DescriberClient
    from trajlab.clients.encoder import EncoderClient
    from trajlab.clients.health import wait_until_serving
    from trajlab.clipio import save_clip
    from trajlab.explain import _points_to_fit as points_to_fit
    from trajlab.explain import explain
    from trajlab_cli import app
    from trajlab_cli.encoder import _prepare as fit_with_listmodels
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
    ms: dict[str, list[float]] = {k: [] for k in ("chain", "command", "strict", "earlier", "cli", "borrowed")}
    # The `trajlab explain` command's own function, with the values typer would pass.
    command_kwargs = dict(
        clip=clip_path, target=enc_target, describer=desc_target, branch="b1", version=0, backend="analytic",
        as_json=True, plot=None, min_confidence=0.3, timeout=30.0, key=None, index=0, fps=0.0, strict=False,
    )  # fmt: skip
    runner = CliRunner()

    def earlier_command(path: Path, enc_target: str, desc_target: str) -> None:
        """(c0): the command as it was before analyze_fitted: ListModels, fit, Analyze, Describe."""
        from trajlab_cli.encoder import _load

        source, rate = _load(path, None, 0, 0.0)
        with EncoderClient(enc_target) as e, DescriberClient(desc_target) as d:
            sent, sent_fps, notes = fit_with_listmodels(e, path, source, rate, "b1", 0, False, False)
            ex = explain(
                e, d, sent, fps=sent_fps, branch="b1", backend="analytic", source=str(path), notes=notes
            )
        print(json.dumps(ex.to_dict()))

    try:
        # gRPC lends an open connection to a new channel with the same settings: the bench's own
        # clients differ (by one byte of message size), so the command's channels connect afresh,
        # as in a real `trajlab explain` process; (c'') measures the command with borrowed ones.
        size = DEFAULT_MAX_MESSAGE_BYTES + 1
        with (
            EncoderClient(enc_target, max_message_bytes=size) as enc,
            DescriberClient(desc_target, max_message_bytes=size) as desc,
        ):
            enc.wait_until_serving(120)
            with grpc.insecure_channel(desc_target) as ch:
                wait_until_serving(ch, what=f"describer at {desc_target}", timeout=60)

            def direct() -> list[float]:
                """(a): Analyze, then Describe on its track; the ms of each."""
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
                assert d.equations
                return [(t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3]

            def printing(fn: Any, *a: Any, **kw: Any) -> None:
                with contextlib.redirect_stdout(io.StringIO()) as printed:
                    fn(*a, **kw)
                if not printed.getvalue().startswith("{"):
                    raise RuntimeError(f"trajlab explain printed {printed.getvalue()[:200]!r}")

            def through_typer() -> None:
                res = runner.invoke(app, cli_args)
                if res.exit_code != 0:
                    raise RuntimeError(f"trajlab explain failed: {res.output}")

            def borrowed() -> float:
                """(c''): the command while clients of the same settings hold connections it borrows."""
                with EncoderClient(enc_target) as lender, DescriberClient(desc_target) as lender2:
                    lender.list_models()
                    lender2.list_backends()
                    t0 = time.perf_counter()
                    printing(explain_command, **command_kwargs)
                    return (time.perf_counter() - t0) * 1e3

            variants: dict[str, Any] = {
                "chain": lambda: explain(enc, desc, clip, fps=kit.FPS, branch="b1", backend="analytic"),
                "command": lambda: printing(explain_command, **command_kwargs),
                "strict": lambda: printing(explain_command, **{**command_kwargs, "strict": True}),
                "earlier": lambda: printing(earlier_command, clip_path, enc_target, desc_target),
                "cli": through_typer,
                "borrowed": borrowed,
                "direct": direct,
            }
            order = list(variants)
            for rep in range(args.warmup + args.reps):
                # Each repetition starts with another variant, so none always follows the same one.
                for name in order[rep % len(order) :] + order[: rep % len(order)]:
                    # Untimed: gRPC tears a closed channel's connection down a little later, and the
                    # next variant's equal channel would borrow it; then each connects afresh.
                    time.sleep(PAUSE_SECONDS)
                    t0 = time.perf_counter()
                    got = variants[name]()
                    took = (time.perf_counter() - t0) * 1e3
                    if rep < args.warmup:
                        continue
                    if name == "direct":
                        analyze_ms.append(got[0])
                        describe_ms.append(got[1])
                    else:
                        ms[name].append(got if isinstance(got, float) else took)
        launch_ms = time_launches(args.launches, args.baseline, cli_args, tmp)
    finally:
        stop(enc_proc)
        stop(desc_proc)
        shutil.rmtree(tmp, ignore_errors=True)  # the model, the clip and any baseline tree

    direct = pct(analyze_ms, 50) + pct(describe_ms, 50)
    out = {
        "reps": args.reps,
        "analyze_p50_ms": pct(analyze_ms, 50),
        "describe_p50_ms": pct(describe_ms, 50),
        "direct_sum_p50_ms": direct,
        "explain_chain_p50_ms": pct(ms["chain"], 50),
        "explain_chain_p90_ms": pct(ms["chain"], 90),
        "explain_command_p50_ms": pct(ms["command"], 50),
        "explain_command_p90_ms": pct(ms["command"], 90),
        "ratio_command": pct(ms["command"], 50) / direct,
        "explain_strict_p50_ms": pct(ms["strict"], 50),
        "ratio_strict": pct(ms["strict"], 50) / direct,
        "explain_borrowed_p50_ms": pct(ms["borrowed"], 50),
        "ratio_borrowed": pct(ms["borrowed"], 50) / direct,
        "explain_cli_p50_ms": pct(ms["cli"], 50),
        "explain_cli_p90_ms": pct(ms["cli"], 90),
        "ratio_chain": pct(ms["chain"], 50) / direct,
        "ratio_cli": pct(ms["cli"], 50) / direct,
        "explain_earlier_p50_ms": pct(ms["earlier"], 50),
        "ratio_earlier": pct(ms["earlier"], 50) / direct,
        "launch_ms": launch_ms,
        "launch_p50_ms": {k: pct(v, 50) for k, v in launch_ms.items() if v},
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
    print(
        f"  ... with connections borrowed from open clients p50 {out['explain_borrowed_p50_ms']:.2f} ms, "
        f"ratio {out['ratio_borrowed']:.2f}x"
    )
    print(
        f"  ... the earlier path (ListModels first) p50 {out['explain_earlier_p50_ms']:.2f} ms, "
        f"ratio {out['ratio_earlier']:.2f}x"
    )
    report_launches(out, launch_ms)
    print(f"  load average (1 min) {out['load_avg_1m']:.1f} on {out['cores']} cores")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
