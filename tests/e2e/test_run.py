"""`trajlab run` end to end: the real services as local processes, a real quick run.

These are the slowest tests of the suite (the quick run trains four branches on
the CPU), so the quick run happens once per session and every assertion about its
report reads the same output.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trajlab.data.stress import STRESS_SETS
from trajlab.profiles import CLASS_NAMES, load_profile
from trajlab.runs import run_name, split_run_name, training_seeds

pytestmark = pytest.mark.slow

TRAJLAB = [sys.executable, "-m", "trajlab_cli"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_QUICK = load_profile("quick").training
# `make run` trains every branch once per default seed: the runs b1@s0, ... (trajlab.runs).
RUNS = [run_name(b, s) for b in ("b1", "b2", "b3", "b4") for s in training_seeds(_QUICK.seed, _QUICK.seeds)]


def _run_dir(root: Path, profile: str, run: str) -> Path:
    """Where `trajlab run` trains a run: <root>/runs/<profile>/<branch>/seed-<seed>."""
    branch, seed = split_run_name(run)
    return root / "runs" / profile / branch / f"seed-{seed}"


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for p in pids:
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{p}/stat")
        if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
            continue
        alive.append(p)
    return alive


def _wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("quick-run")
    # Exactly as `make run` does it: from the working directory, with the default (relative) root.
    proc = subprocess.run(
        [*TRAJLAB, "run", "--profile", "quick"],
        capture_output=True,
        text=True,
        timeout=2400,
        cwd=root,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    return root, proc


def _report_dir(root: Path) -> Path:
    dirs = sorted((root / "reports").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_quick_run_succeeds_and_prints_the_winner_and_report(quick_run) -> None:
    root, proc = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rdir = _report_dir(root)
    assert f"Report: {rdir / 'PARALLEL_RESULTS_COMPARISON.md'}" in proc.stdout.replace("\n", "")
    assert re.search(r"Leader by the rule: b[1-4]@s\d", proc.stdout)
    assert re.search(r"Verdict: (winner: b[1-4]|statistically tied for first: b[1-4])", proc.stdout)
    for r in RUNS:
        assert r in proc.stdout


def test_report_has_every_section_and_valid_figures(quick_run) -> None:
    root, _ = quick_run
    rdir = _report_dir(root)
    md = (rdir / "PARALLEL_RESULTS_COMPARISON.md").read_text()
    for heading in ("## Summary", "## Statistics", "## Success criteria", "## Classification", "## Forecast",
                    "## Baselines", "## Per-class figures", "## Training curves", "## Robustness",
                    "## Cost beside quality", "## Equations from the describer", "## Missing"):
        assert heading in md, heading
    pngs = sorted(rdir.glob("*.png"))
    names = {p.name for p in pngs}
    assert {f"confusion_{r}.png" for r in RUNS} | {"robustness_heatmap.png", "cost_pareto.png"} <= names
    for r in RUNS:  # every run scored on every stress set (`make run` turns them on)
        for stress_set in STRESS_SETS:
            assert re.search(rf"^\| {re.escape(r)} \| {stress_set}\b", md, re.M), (r, stress_set)
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 2000, p
    html = (rdir / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img src=\"confusion" not in html


def test_report_numbers_equal_the_trainers_results(quick_run) -> None:
    root, _ = quick_run
    md = (_report_dir(root) / "PARALLEL_RESULTS_COMPARISON.md").read_text()
    for b in RUNS:
        results = json.loads((_run_dir(root, "quick", b) / "results.json").read_text())
        assert results["class_names"] == list(CLASS_NAMES)
        acc = f"{100 * results['accuracy']:.2f} %"
        mae = f"{results['forecast_mae_pct']:.2f} %"
        row = next(line for line in md.splitlines() if line.startswith(f"| **{b}**") or line.startswith(f"| {b} |"))
        assert acc in row and mae in row, (b, acc, mae, row)


def test_winner_follows_the_rule(quick_run) -> None:
    root, proc = quick_run
    results = {b: json.loads((_run_dir(root, "quick", b) / "results.json").read_text()) for b in RUNS}
    best = max(results, key=lambda b: (results[b]["accuracy"], -results[b]["forecast_mae_pct"]))
    assert f"Leader by the rule: {best};" in proc.stdout
    md = (_report_dir(root) / "PARALLEL_RESULTS_COMPARISON.md").read_text()
    assert f"**Leader by the rule: {best}.**" in md


def test_models_were_published_for_every_branch(quick_run) -> None:
    root, _ = quick_run
    for b in RUNS:
        vdir = root / "models" / "quick" / b / "1"
        assert (vdir / "model.onnx").is_file() and (vdir / "metadata.json").is_file()


def _tiny_profile(tmp_path: Path, epochs: int) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(
        "name: tiny\n"
        "dataset: {samples: 48, test_samples: 16, frames: 16, height: 32, width: 32, seed: 3}\n"
        f"training: {{epochs: {epochs}, batch_size: 8, checkpoint_every: 1, status_interval_seconds: 1, threads: 1}}\n"
    )
    return p


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    profile = _tiny_profile(tmp_path, epochs=200)
    proc = subprocess.Popen(
        [*TRAJLAB, "run", "--profile", str(profile), "--root", str(tmp_path), "--branches", "b1,b4",
         "--no-prometheus"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a suite started as a background job (`make test &`) hands its
        # children SIGINT ignored (POSIX), and the Ctrl-C below would then never arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    status = _run_dir(tmp_path, "tiny", "b4@s0") / "status.json"

    def training() -> bool:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        return status.exists() and "training" in status.read_text().lower()

    _wait_for(training, 240, "b4 to train")
    # `trajlab monitor --once` against the real trainers of this run, found through endpoints.json.
    endpoints = json.loads((tmp_path / "runs" / "tiny" / "endpoints.json").read_text())
    spec = ",".join(f"{b}={t}" for b, t in endpoints["trainers"].items())
    mon = subprocess.run([*TRAJLAB, "monitor", "--once", "--trainers", spec], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert mon.returncode == 0, mon.stderr
    rows = {line.split()[1]: line for line in mon.stdout.splitlines() if re.match(r"^\S\s+b[14]@s0\s", line)}
    assert set(rows) == {"b1@s0", "b4@s0"}, mon.stdout
    assert "training" in rows["b4@s0"] and "/200" in rows["b4@s0"], mon.stdout
    children = _children_of(proc.pid)
    assert len(children) >= 5, children  # describer, encoder, reporter, two trainers
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert _wait_gone(children) == []


def test_a_crashing_service_is_named_with_its_log_and_nothing_is_left(tmp_path: Path) -> None:
    profile = _tiny_profile(tmp_path, epochs=200)
    env = {**os.environ, "TRAJLAB_ENCODER_POLL_SECONDS": "0", "COLUMNS": "200"}  # invalid: must be > 0
    proc = subprocess.Popen(
        [*TRAJLAB, "run", "--profile", str(profile), "--root", str(tmp_path), "--branches", "b1",
         "--no-prometheus"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    seen: set[int] = set()
    while proc.poll() is None:
        seen.update(_children_of(proc.pid))
        time.sleep(0.1)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-2000:]
    flat = err.replace("\n", "")
    assert "encoder exited with code" in flat and "encoder.log" in flat
    assert "poll_seconds" in err
    assert _wait_gone(list(seen)) == []


def test_curves_and_latency_come_from_the_real_prometheus(quick_run) -> None:
    # `trajlab run` starts Prometheus (CI installs it) scraping the real trainers and encoder.
    root, proc = quick_run
    assert "prometheus=on" in proc.stderr
    md = (_report_dir(root) / "PARALLEL_RESULTS_COMPARISON.md").read_text()
    for b in RUNS:
        curves = _row_cells(md, b, "## Training curves")
        assert curves[1] == "prometheus", curves  # not the GetHistory fallback
        latency = _row_cells(md, b, "server p50 (ms)")
        assert float(latency[1]) > 0 and float(latency[2]) >= float(latency[1]), latency
    assert "differ from the trainer's history" not in md  # the curves equal GetHistory


def _row_cells(md: str, first_cell: str, after: str) -> list[str]:
    tail = md[md.index(after):]
    line = next(x for x in tail.splitlines() if x.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip().strip("|").split("|")]
