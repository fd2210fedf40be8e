"""``trajlab stress`` against a real encoder server serving a tiny exported model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.contract.encoder import kit
from trajlab.data import load_dataset
from trajlab.data.stress import stress_dir
from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD, to_model_input
from trajlab_cli import app


@pytest.fixture
def served(start_server, repo: Path, onnx_models: dict[str, Path]) -> str:
    kit.publish(repo, "b1", onnx_models["a"])
    srv = start_server()
    from trajlab.clients.encoder import EncoderClient

    with EncoderClient(f"127.0.0.1:{srv.port}") as enc:
        enc.wait_until_serving(10)
    return f"127.0.0.1:{srv.port}"


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    """A profile whose clips the tiny model takes (8 frames of 32 x 32, 4 to forecast)."""
    p = tmp_path / "tiny.yaml"
    dataset = {"samples": 16, "test_samples": 12, "frames": kit.FRAMES, "horizon": kit.HORIZON}
    dataset |= {"height": kit.HEIGHT, "width": kit.WIDTH, "fps": kit.FPS, "clutter": 1, "transients": 1}
    p.write_text(yaml.safe_dump({"name": "tiny", "dataset": dataset}))
    return p


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    out = res.output
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        out += "".join(traceback.format_exception(res.exception))
    return res.exit_code, out


def _onnx_answers(onnx: Path, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    probs, fc = [], []
    for c in clips:
        p, f = sess.run(["probabilities", "forecast"], {"clip": to_model_input(c, DEFAULT_MEAN, DEFAULT_STD)})
        probs.append(p[0])
        fc.append(f[0])
    return np.argmax(probs, axis=1), np.array(fc)


def test_stress_scores_the_served_model_on_each_set(
    served: str, profile: Path, tmp_path: Path, onnx_models
) -> None:
    data = tmp_path / "data" / "tiny"
    args = ["stress", "--branch", "b1", "--target", served, "--profile", str(profile), "--data", str(data)]
    code, out = _run(*args, "--sets", "unseen_seed,clutter", "--samples", "8", "--json")
    assert code == 0, out
    got = json.loads(out)
    assert list(got["sets"]) == ["clutter", "unseen_seed"]
    rows = {r["set"]: r for r in got["rows"]}
    assert set(rows) == {"clutter", "unseen_seed"} and not got["missing"]

    test = load_dataset(data).test
    pred, _ = _onnx_answers(onnx_models["a"], np.asarray(test.clips))
    assert got["test"]["b1"]["clips"] == 12
    assert got["test"]["b1"]["accuracy"] == pytest.approx(float(np.mean(pred == test.labels)))
    for name in ("clutter", "unseen_seed"):
        clips = load_dataset(stress_dir(data, name)).test
        p, fc = _onnx_answers(onnx_models["a"], np.asarray(clips.clips))
        acc = float(np.mean(p == clips.labels))
        mae = (np.abs(fc - clips.future) / clips.extent[:, None, None]).mean() * 100
        r = rows[name]
        assert r["clips"] == 8
        assert r["accuracy"] == pytest.approx(acc)
        assert r["forecast_mae_pct"] == pytest.approx(mae, rel=1e-4)
        lo, hi = r["accuracy_drop"]["low"], r["accuracy_drop"]["high"]
        assert lo <= r["accuracy_drop"]["value"] <= hi
    # Clutter shows the test clips' own trajectories: the drop is paired, against those 8 clips.
    assert rows["clutter"]["paired"] and not rows["unseen_seed"]["paired"]
    assert rows["clutter"]["accuracy_drop"]["value"] == pytest.approx(
        float(np.mean(pred[:8] == test.labels[:8])) - rows["clutter"]["accuracy"]
    )

    # The table form names every set and the test split.
    code, out = _run(*args, "--sets", "clutter", "--samples", "8")
    assert code == 0, out
    assert "test split" in out and "clutter" in out


def test_stress_bad_inputs_fail_before_any_work(served: str, profile: Path, tmp_path: Path) -> None:
    data = tmp_path / "data" / "tiny"
    base = ["stress", "--target", served, "--profile", str(profile), "--data", str(data)]
    code, out = _run(*base, "--branch", "b9")
    assert code == 2 and "serves no model of b9" in out and "it serves: b1" in out, out
    code, out = _run(*base, "--branch", "b1", "--sets", "fog")
    assert code == 2 and "unknown stress set 'fog'" in out, out
    code, out = _run(*base, "--branch", "b1", "--branch", "b1")
    assert code == 2 and "b1 given twice" in out, out
    code, out = _run(*base[:3], "--profile", "quick", "--data", str(data), "--branch", "b1")
    assert code == 2 and "its clips are (16, 32, 32, 3)" in out and "served b1 takes (8, 32, 32, 3)" in out, (
        out
    )
    assert not (data / "manifest.json").exists() and not stress_dir(data, "clutter").exists()  # nothing built


def test_the_reporter_scores_the_stress_sets_when_enabled(served: str, profile: Path, tmp_path: Path) -> None:
    from services.reporter.model import BranchReport
    from services.reporter.robustness import report_robustness
    from services.reporter.settings import ReporterSettings
    from services.reporter.sources.grpc_sources import EncoderSource
    from services.reporter.sources.validation import load_validation
    from trajlab.config import load_settings
    from trajlab.data import build_dataset
    from trajlab.profiles import load_profile

    data = tmp_path / "data" / "tiny"
    build_dataset(load_profile(profile).dataset, data)
    test = load_validation(data, "test")
    b1 = BranchReport(name="b1", trainer_target="x")
    b1.served = EncoderSource(served).evaluate("b1", test, np.arange(len(test)))
    reports = {"b1": b1, "b2": BranchReport(name="b2", trainer_target="y")}

    def settings(**kw: object) -> ReporterSettings:
        return load_settings(ReporterSettings, data_dir=data, encoder_target=served, stress_samples=8, **kw)

    assert report_robustness(settings(), reports, test) == (None, "")  # off by default
    res, why = report_robustness(settings(stress_sets="noise"), reports, test)
    assert why == "" and res is not None
    row = res.row("b1", "noise")
    assert row is not None and row.paired and row.clips == 8
    assert res.test["b1"][1] == pytest.approx(b1.served.metrics.accuracy)
    assert res.missing == {"b2": "no served test-split evaluation"}
    assert (stress_dir(data, "noise") / "manifest.json").is_file()  # built beside the evaluation data
