"""The model's own observed track: served by Analyze when the model exports it, said plainly when not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.contract.encoder import kit
from trajlab.clients.encoder import EncoderClient
from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD, to_model_input


@pytest.fixture(scope="module")
def track_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kit.export_tiny_model(tmp_path_factory.mktemp("track") / "t.onnx", seed=2, track=True)


@pytest.mark.parametrize("batching", [False, True])
def test_a_model_with_a_track_serves_it_and_one_without_says_so(
    start_server, repo: Path, onnx_models, track_model: Path, batching: bool
) -> None:
    kit.publish(repo, "b1", track_model, outputs=kit.metadata("b1")["outputs"] + kit.TRACK_OUTPUT_SPECS)
    kit.publish(repo, "b2", onnx_models["a"])
    srv = start_server(batching=batching)
    clip = kit.random_clips(1, seed=7)[0]
    with EncoderClient(f"127.0.0.1:{srv.port}") as enc:
        enc.wait_until_serving(10)
        infos = {m.branch: m for m in enc.list_models()}
        assert infos["b1"].has_track and not infos["b2"].has_track

        got = enc.analyze(clip, branch="b1", fps=4.0)
        sess = ort.InferenceSession(str(track_model), providers=["CPUExecutionProvider"])
        ref_track, ref_conf = sess.run(
            ["track", "track_confidence"], {"clip": to_model_input(clip, DEFAULT_MEAN, DEFAULT_STD)}
        )
        assert got.track is not None and got.track.shape == (kit.FRAMES, 3)
        np.testing.assert_allclose(got.track, ref_track[0], atol=1e-5)
        np.testing.assert_allclose(got.track_confidence, ref_conf[0], atol=1e-6)
        # One time per observed frame at the clip's rate, before the forecast's times.
        np.testing.assert_allclose(got.track_times, np.arange(kit.FRAMES) / 4.0)
        assert got.forecast.times[0] == pytest.approx(kit.FRAMES / 4.0)

        plain = enc.analyze(clip, branch="b2")
        assert plain.track is None and plain.to_dict()["track"] is None
        assert plain.classification.class_name  # the rest of the answer is all there


def test_a_model_declaring_a_track_it_does_not_export_is_refused(
    start_server, repo: Path, onnx_models
) -> None:
    from trajlab.clients.encoder import EncoderClient

    kit.publish(repo, "b1", onnx_models["a"])
    kit.publish(repo, "b1", onnx_models["b"], outputs=kit.metadata("b1")["outputs"] + kit.TRACK_OUTPUT_SPECS)
    srv = start_server()
    with EncoderClient(f"127.0.0.1:{srv.port}") as enc:
        enc.wait_until_serving(10)
        (m,) = enc.list_models("b1")
        assert m.version == 1 and not m.has_track  # v2 lies about its outputs: v1 keeps serving
