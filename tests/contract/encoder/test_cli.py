"""``trajlab classify`` / ``trajlab forecast`` / ``trajlab models`` against a real server, per input format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.contract.encoder import kit
from trajlab.clipio import save_clip
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


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    out = res.output
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        out += "".join(traceback.format_exception(res.exception))
    return res.exit_code, out


@pytest.mark.parametrize("fmt", ["npy", "npz", "png", "gif", "mp4"])
def test_classify_and_forecast_each_clip_format(served: str, tmp_path: Path, onnx_models, fmt: str) -> None:
    import onnxruntime as ort

    clip = kit.random_clips(1, seed=3)[0]
    path = save_clip(tmp_path / ("frames" if fmt == "png" else f"clip.{fmt}"), clip, fps=8.0)
    code, out = _run("classify", str(path), "--target", served, "--branch", "b1", "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["shape"] == [kit.FRAMES, kit.HEIGHT, kit.WIDTH, kit.CHANNELS]
    assert (got["branch"], got["version"]) == ("b1", 1)
    probs = np.array(list(got["probabilities"].values()))
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    if fmt in ("npy", "npz", "png"):  # lossless formats: exactly what onnxruntime says for the clip
        sess = ort.InferenceSession(str(onnx_models["a"]), providers=["CPUExecutionProvider"])
        ref = sess.run(["probabilities"], {"clip": to_model_input(clip, DEFAULT_MEAN, DEFAULT_STD)})[0][0]
        np.testing.assert_allclose(probs, ref, atol=1e-6)

    code, out = _run("forecast", str(path), "--target", served, "--json")
    assert code == 0, out
    fc = json.loads(out)
    assert np.array(fc["positions"]).shape == (kit.HORIZON, 3)
    if fmt in ("npz", "gif", "mp4"):  # these files carry their frame rate (8 fps; GIF rounds to 10 ms)
        assert fc["times"][0] == pytest.approx(kit.FRAMES / 8.0, rel=0.05)

    code, out = _run("classify", str(path), "--target", served)
    assert code == 0, out
    assert "b1 v1" in out and "linear" in out and "%" in out


def test_readable_forecast_and_models_listing(served: str, tmp_path: Path) -> None:
    path = save_clip(tmp_path / "c.npy", kit.random_clips(1)[0])
    code, out = _run("forecast", str(path), "--target", served)
    assert code == 0, out
    assert "forecast (world units)" in out and "t (s)" in out
    code, out = _run("models", "--target", served, "--json")
    assert code == 0, out
    (m,) = json.loads(out)
    assert (m["branch"], m["version"], m["is_default"], m["execution_provider"]) == (
        "b1",
        1,
        True,
        "CPUExecutionProvider",
    )


def test_cli_reports_server_refusals_and_bad_files(served: str, tmp_path: Path) -> None:
    wrong = save_clip(tmp_path / "big.npy", np.zeros((16, 64, 64, 3), np.uint8))
    code, out = _run("classify", str(wrong), "--target", served, "--strict")
    assert code == 2
    assert "INVALID_ARGUMENT" in out and "expects clips of frames=8 height=32 width=32 channels=3" in out
    code, out = _run("classify", str(wrong), "--target", served, "--branch", "zz", "--strict")
    assert code == 2 and "NOT_FOUND" in out
    floats = tmp_path / "f.npy"
    np.save(floats, np.zeros((8, 32, 32, 3), np.float32))
    res = CliRunner().invoke(app, ["classify", str(floats), "--target", served])
    assert res.exit_code == 2
    assert "must be uint8" in res.stderr and floats.name in res.stderr


def test_a_phone_sized_mp4_is_fitted_to_the_model_and_says_how(served: str, tmp_path: Path) -> None:
    # 3 s of 640x480 at 30 fps; the model takes 8 frames of 32x32 at 8 fps.
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (90, 480, 640, 3), dtype=np.uint8)
    path = save_clip(tmp_path / "phone.mp4", video, fps=30.0)
    code, out = _run("classify", str(path), "--target", served, "--json")
    assert code == 0, out
    got = json.loads(out.splitlines()[-1])
    assert got["source_shape"] == [90, 480, 640, 3]
    assert got["shape"] == [kit.FRAMES, kit.HEIGHT, kit.WIDTH, kit.CHANNELS]
    assert any("30 fps" in n for n in got["adapted"]) and any("640x480" in n for n in got["adapted"])
    assert sum(got["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    code, out = _run("forecast", str(path), "--target", served)
    assert code == 0, out
    assert "adapted: resampled 90 frames at 30 fps" in out  # said to the user (stderr)
    # Strict: sent as it is, and this one is too big to send at all.
    code, out = _run("classify", str(path), "--target", served, "--strict")
    assert code != 0 and "exceeds the max message size" in out


def test_a_gif_of_another_size_and_length_is_classified(served: str, tmp_path: Path) -> None:
    path = save_clip(tmp_path / "small.gif", kit.random_clips(1, seed=5)[0][:5, :20, :24], fps=10.0)
    code, out = _run("classify", str(path), "--target", served, "--json")
    assert code == 0, out
    got = json.loads(out.splitlines()[-1])
    notes = " ".join(got["adapted"])
    assert "padded" in notes and "24x20" in notes


@pytest.mark.parametrize("kind", ["single", "garbage"])
def test_clips_that_cannot_be_used_get_one_clear_line_naming_the_file(
    served: str, tmp_path: Path, kind: str
) -> None:
    if kind == "single":
        path = save_clip(tmp_path / "one.npy", kit.random_clips(1)[0][:1])
        expected = "at least 2 frames"
    else:
        path = tmp_path / "broken.mp4"
        path.write_bytes(b"not a video at all" * 100)
        expected = "cannot read"
    res = CliRunner().invoke(app, ["classify", str(path), "--target", served])
    assert res.exit_code == 2
    message = res.output + str(res.exception)
    assert expected in message and path.name in message


def test_a_plain_branch_name_classifies_a_clip_of_another_size_with_its_default_seed_run(
    start_server, repo: Path, onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    """After a seeded run only b1@s0 and b1@s1 are served: ``--branch b1`` (the README's default
    run) fits a clip of another size to b1@s0 and answers from it, as a request for b1 would."""
    kit.publish(repo, "b1@s0", onnx_models["a"])
    kit.publish(repo, "b1@s1", onnx_models["b"])
    srv = start_server()
    from trajlab.clients.encoder import EncoderClient

    target = f"127.0.0.1:{srv.port}"
    with EncoderClient(target) as enc:
        enc.wait_until_serving(10)
    t, h, w, c = kit.FRAMES, kit.HEIGHT, kit.WIDTH, kit.CHANNELS
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (t, h * 2, w + 8, c), dtype=np.uint8))
    code, out = _run("classify", str(path), "--target", target, "--branch", "b1", "--json")
    assert code == 0, out
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["branch"] == "b1@s0" and doc["shape"] == [t, h, w, c]
    code, out = _run("models", "--target", target, "--branch", "b1", "--json")
    assert code == 0, out
    assert [m["branch"] for m in json.loads(out)] == ["b1@s0"]
