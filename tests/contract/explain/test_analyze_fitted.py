"""``trajlab.analyze_fitted``: a clip of any shape analyzed with as few encoder calls as it needs.

A real encoder serves the tiny track model (8x32x32 at 8 fps). Each answer must be the one
the clip fitted by ``adapt_clip`` gets when sent as it is (``--strict``), whatever path got
it; the calls are counted by a client that records them, not taken from the function's
own account.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tests.contract.encoder import kit
from trajlab.analyze_fitted import analyze_fitted
from trajlab.clients.encoder import Analysis, EncoderClient
from trajlab.clipadapt import adapt_clip, target_of


class RecordingClient(EncoderClient):
    """An EncoderClient that records the RPCs it makes."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.calls: list[str] = []

    def analyze(self, *args: Any, **kwargs: Any) -> Analysis:
        self.calls.append("Analyze")
        return super().analyze(*args, **kwargs)

    def list_models(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("ListModels")
        return super().list_models(*args, **kwargs)


@pytest.fixture
def encoder(start_server, repo: Path, tmp_path_factory) -> Iterator[RecordingClient]:
    model = kit.export_tiny_model(tmp_path_factory.mktemp("m") / "t.onnx", seed=2, track=True)
    kit.publish(repo, "b1", model, outputs=kit.metadata("b1")["outputs"] + kit.TRACK_OUTPUT_SPECS)
    srv = start_server()
    with RecordingClient(f"127.0.0.1:{srv.port}") as enc:
        enc.wait_until_serving(10)
        yield enc


def _ramp(frames: int, height: int = kit.HEIGHT, width: int = kit.WIDTH) -> np.ndarray:
    values = (20 + 8 * np.arange(frames)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (frames, height, width, 3)).copy()


def _fitted_as_before(enc: EncoderClient, clip: np.ndarray, fps: float) -> tuple[Analysis, list[str]]:
    """What the CLI did before: ListModels, adapt_clip, then Analyze the fitted clip as it is."""
    info = enc.model_info("b1")
    adapted = adapt_clip(clip, fps, target_of(info.input_shape, info.metadata["fps"]))
    return enc.analyze(adapted.clip, branch="b1", fps=adapted.fps), adapted.notes


def _assert_same(got: Analysis, want: Analysis) -> None:
    np.testing.assert_allclose(got.forecast.positions, want.forecast.positions, rtol=1e-6)
    np.testing.assert_allclose(got.forecast.times, want.forecast.times, rtol=1e-6)
    np.testing.assert_allclose(got.track_times, want.track_times, rtol=1e-6)
    assert got.classification == want.classification


@pytest.mark.parametrize(
    ("fps", "note"),
    [(kit.FPS, None), (0.0, f"the clip does not say its frame rate; taken as the model's {kit.FPS:g} fps")],
)
def test_a_clip_in_the_models_shape_costs_one_analyze(
    encoder: RecordingClient, fps: float, note: str | None
) -> None:
    clip = _ramp(kit.FRAMES)
    want, want_notes = _fitted_as_before(encoder, clip, fps)
    encoder.calls.clear()
    got = analyze_fitted(encoder, clip, fps, branch="b1")
    assert encoder.calls == ["Analyze"]
    _assert_same(got.analysis, want)
    assert got.notes == want_notes == ([note] if note else [])
    assert got.fps == pytest.approx(kit.FPS)


def test_another_frame_rate_is_resampled_to_the_models_without_listmodels(encoder: RecordingClient) -> None:
    clip = _ramp(kit.FRAMES)
    want, want_notes = _fitted_as_before(encoder, clip, 2 * kit.FPS)
    encoder.calls.clear()
    got = analyze_fitted(encoder, clip, 2 * kit.FPS, branch="b1")
    assert encoder.calls == ["Analyze", "Analyze"]
    _assert_same(got.analysis, want)
    assert got.notes == want_notes and any("resampled 8 frames at 16 fps" in n for n in got.notes)


@pytest.mark.parametrize(
    ("clip", "says"),
    [(_ramp(kit.FRAMES, 48, 64), "resized 64x48 to the model's 32x32"), (_ramp(20), "kept the last 8 of 20")],
)
def test_another_shape_is_refused_then_fitted(encoder: RecordingClient, clip: np.ndarray, says: str) -> None:
    want, want_notes = _fitted_as_before(encoder, clip, kit.FPS)
    encoder.calls.clear()
    got = analyze_fitted(encoder, clip, kit.FPS, branch="b1", source="phone.npz")
    assert encoder.calls == ["Analyze", "ListModels", "Analyze"]
    _assert_same(got.analysis, want)
    assert got.notes == want_notes and any(says in n for n in got.notes)
    assert got.clip.shape == (kit.FRAMES, kit.HEIGHT, kit.WIDTH, 3)


def test_a_clip_too_large_for_a_message_is_fitted(encoder: RecordingClient) -> None:
    big = _ramp(12, 1024, 1024)  # 37 MiB: more than a message may carry
    got = analyze_fitted(encoder, big, kit.FPS, branch="b1")
    assert got.clip.shape == (kit.FRAMES, kit.HEIGHT, kit.WIDTH, 3)
    assert any("resized 1024x1024" in n for n in got.notes)
    _assert_same(got.analysis, _fitted_as_before(encoder, big, kit.FPS)[0])


def test_strict_sends_the_clip_as_it_is_once_and_the_refusal_names_the_shape(
    encoder: RecordingClient,
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        analyze_fitted(encoder, _ramp(kit.FRAMES, 48, 64), kit.FPS, branch="b1", strict=True)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frames=8 height=32 width=32" in err.value.details()
    assert encoder.calls == ["Analyze"]


def test_an_unknown_branch_and_a_server_down_are_not_fitted_around(encoder: RecordingClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        analyze_fitted(encoder, _ramp(kit.FRAMES), kit.FPS, branch="b9")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and encoder.calls == ["Analyze"]
    with RecordingClient("127.0.0.1:1") as down, pytest.raises(grpc.RpcError) as err:
        analyze_fitted(down, _ramp(kit.FRAMES), kit.FPS, branch="b1", timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and down.calls == ["Analyze"]


def test_connect_starts_the_connection_before_the_first_call(encoder: RecordingClient) -> None:
    """``trajlab explain`` connects to the describer while the encoder works: connect() must
    make the channel ready without a call (with this gRPC; a change of its internals fails here)."""
    idle, ready = 0, 2  # gRPC core's connectivity states
    with EncoderClient(encoder.target) as fresh:
        core = fresh._channel._channel  # the state as gRPC core sees it, without changing it
        assert core.check_connectivity_state(False) == idle
        fresh.connect()
        deadline = time.monotonic() + 10
        while core.check_connectivity_state(False) != ready and time.monotonic() < deadline:
            time.sleep(0.01)
        assert core.check_connectivity_state(False) == ready
    with EncoderClient("127.0.0.1:1") as down:
        down.connect()  # nothing listens: no error until a call is made
