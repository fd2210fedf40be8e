"""``trajlab explain``: a clip through a real encoder and a real describer, to one answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from grpc_health.v1 import health
from typer.testing import CliRunner

from services.describer.router import BackendRegistry, Router
from services.describer.servicer import SERVICE_NAME, DescriberServicer
from services.describer.settings import DescriberSettings
from tests.contract.encoder import kit
from trajlab.clients.encoder import EncoderClient
from trajlab.clipio import save_clip
from trajlab.config import load_settings
from trajlab.describer.v1 import describer_pb2_grpc
from trajlab.equations import parse_equations
from trajlab.grpc_server import create_server
from trajlab.profiles import load_branches
from trajlab_cli import app


@pytest.fixture(scope="module")
def describer() -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    for var in ("OPENAI_API_KEY", "TRAJLAB_DESCRIBER_OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        mp.delenv(var, raising=False)  # no key: b1's GPT-4 falls back to the analytic fitter
    settings = load_settings(DescriberSettings, port=0)
    branches = {n: b.describer_backend for n, b in load_branches().items()}
    servicer = DescriberServicer(Router(BackendRegistry(settings, branches)))
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: describer_pb2_grpc.add_DescriberServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        health_servicer=health.HealthServicer(),
    )
    yield f"127.0.0.1:{port}"
    server.stop(0)
    mp.undo()


@pytest.fixture
def encoder(start_server, repo: Path, onnx_models, tmp_path_factory) -> str:
    track_model = kit.export_tiny_model(tmp_path_factory.mktemp("m") / "t.onnx", seed=2, track=True)
    kit.publish(repo, "b1", track_model, outputs=kit.metadata("b1")["outputs"] + kit.TRACK_OUTPUT_SPECS)
    kit.publish(repo, "b4", onnx_models["a"])  # a model without a track
    srv = start_server()
    with EncoderClient(f"127.0.0.1:{srv.port}") as enc:
        enc.wait_until_serving(10)
    return f"127.0.0.1:{srv.port}"


def _ramp_clip(frames: int, height: int, width: int) -> np.ndarray:
    """Every pixel of frame k is 20 + 8k: the tiny model's track (each frame's mean colour,
    scaled) then moves along a straight line at constant speed."""
    values = (20 + 8 * np.arange(frames)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (frames, height, width, 3)).copy()


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output + ("" if res.exception is None else repr(res.exception))


def _json(out: str) -> dict:
    # The in-process describer's log lines share the runner's stderr; the answer is the last line.
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    assert lines, out
    return json.loads(lines[-1])


def test_explain_fits_the_equations_to_the_models_own_track(
    encoder: str, describer: str, tmp_path: Path
) -> None:
    path = save_clip(tmp_path / "ramp.npz", _ramp_clip(kit.FRAMES, kit.HEIGHT, kit.WIDTH), fps=kit.FPS)
    plot = tmp_path / "fig" / "explain.png"
    code, out = _run(
        "explain", str(path), "--target", encoder, "--describer", describer, "--json", "--plot", str(plot)
    )
    assert code == 0, out
    got = _json(out)
    assert got["branch"] == "b1" and got["fitted_on"] == "observed track"
    assert sum(got["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    track = np.array(got["track"])
    confident = np.array(got["track_confidence"]) >= 0.3  # the default --min-confidence
    assert track.shape == (kit.FRAMES, 3) and 3 <= got["points_used"] == confident.sum() < kit.FRAMES
    assert any(f"left out {kit.FRAMES - confident.sum()} frames" in n for n in got["notes"])
    # The describer's equations reproduce the track the model saw (a straight line here).
    eqs = parse_equations(got["described"]["equations"])
    fitted = np.stack([e.evaluate(got["track_times"]) for e in eqs], axis=1)
    np.testing.assert_allclose(fitted, track, atol=1e-2 * np.ptp(track))
    # b1's backend is GPT-4; with no key the fitter answers, and the answer says so.
    assert got["described"]["backend_used"] == "analytic" and got["described"]["fallback_used"]
    assert got["described"]["fallback_reason"]
    assert plot.is_file() and plot.stat().st_size > 10_000

    code, out = _run("explain", str(path), "--target", encoder, "--describer", describer)
    assert code == 0, out
    assert "x(t) =" in out and "seen" in out and "forecast" in out and "fallback to analytic" in out


def test_a_model_without_a_track_explains_what_it_has(encoder: str, describer: str, tmp_path: Path) -> None:
    path = save_clip(tmp_path / "c.npy", kit.random_clips(1)[0])
    code, out = _run(
        "explain", str(path), "--target", encoder, "--describer", describer, "--branch", "b4", "--json"
    )
    assert code == 0, out
    got = _json(out)
    assert got["track"] is None and got["fitted_on"] == "forecast only"
    assert any("no observed track" in n for n in got["notes"])
    assert len(got["described"]["equations"]) == 3


def test_explain_takes_an_mp4_and_a_gif_of_other_sizes(encoder: str, describer: str, tmp_path: Path) -> None:
    clip = _ramp_clip(30, 96, 128)
    for name, fps in (("phone.mp4", 24.0), ("small.gif", 10.0)):
        path = save_clip(tmp_path / name, clip, fps=fps)
        code, out = _run("explain", str(path), "--target", encoder, "--describer", describer, "--json")
        assert code == 0, out
        got = _json(out)
        assert any("128x96" in n for n in got["notes"]) and len(got["track"]) == kit.FRAMES


def test_unreachable_describer_is_one_clear_error(encoder: str, tmp_path: Path) -> None:
    path = save_clip(tmp_path / "c.npy", kit.random_clips(1)[0])
    code, out = _run(
        "explain", str(path), "--target", encoder, "--describer", "127.0.0.1:1", "--timeout", "2"
    )
    assert code == 1 and "UNAVAILABLE" in out
