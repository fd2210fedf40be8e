"""The encoder serves what the trainer publishes: a real (tiny) training run, exported and served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from trajlab.clients.encoder import EncoderClient
from trajlab.preprocess import to_model_input


@pytest.mark.slow
@pytest.mark.parametrize("track", [True, False])
def test_a_model_trained_and_published_by_the_trainer_is_served_exactly(
    tmp_path: Path, start_server, repo: Path, track: bool
) -> None:
    """With the track perception the model's own observed track and its confidence are served
    too (parity-gated at export); without it the model exports and serves the three outputs."""
    from services.trainer.training import RunConfig, Trainer
    from trajlab.data import build_dataset, load_dataset
    from trajlab.modelrepo import read_metadata
    from trajlab.profiles import DatasetConfig, ModelConfig, Profile, TrainingConfig, load_branches

    # About 10 s on 2 cores: 16 clips of 8x16x16, one epoch of a thin I3D-like b1.
    profile = Profile(
        name="tiny",
        dataset=DatasetConfig(samples=16, frames=8, height=16, width=16, horizon=4),
        training=TrainingConfig(
            epochs=1, batch_size=8, parity_clips=4, threads=1, checkpoint_every=1
        ),
        model=ModelConfig(encoder_args={"channels": [4, 8, 8]}, track=track),
    )
    cfg = RunConfig(
        branch=load_branches()["b1"],
        profile=profile,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        model_repo=repo,
        progress=False,
    )
    Trainer(cfg).run()
    meta = read_metadata(repo / "b1" / "1")
    assert meta.has_track == track
    assert "onnx_parity_max_abs_diff" in meta.validation_metrics  # the gate covered every output
    val = load_dataset(build_dataset(profile.dataset, tmp_path / "data")).val

    srv = start_server()
    sess = ort.InferenceSession(str(repo / "b1" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    with EncoderClient(f"127.0.0.1:{srv.port}", timeout=10) as enc:
        enc.wait_until_serving(20)
        (info,) = enc.list_models("b1")
        assert info.input_shape == (8, 16, 16, 3) and info.embedding_dim == meta.embedding_dim
        assert info.has_track == track
        for clip in val.clips[:3]:
            ref = sess.run(None, {"clip": to_model_input(clip, meta.input.mean, meta.input.std)})
            ref_p, ref_f, ref_e = ref[:3]
            a = enc.analyze(clip, branch="b1")
            probs = np.array(list(a.classification.probabilities.values()))
            assert probs.sum() == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(probs, ref_p[0], atol=1e-5)
            np.testing.assert_allclose(a.forecast.positions, ref_f[0], atol=1e-5)
            np.testing.assert_allclose(a.embedding, ref_e[0], atol=1e-5)
            assert a.forecast.positions.shape == (profile.dataset.horizon, 3)
            if not track:
                assert len(ref) == 3 and a.track is None and a.track_confidence is None
                continue
            ref_track, ref_conf = ref[3:]
            assert a.track is not None and a.track.shape == (profile.dataset.frames, 3)
            np.testing.assert_allclose(a.track, ref_track[0], atol=1e-5)
            np.testing.assert_allclose(a.track_confidence, ref_conf[0], atol=1e-6)
            assert ((a.track_confidence >= 0) & (a.track_confidence <= 1)).all()
            # World units near the scene's depth, not the readout's normalised ones.
            assert 1.0 < float(np.median(a.track[:, 2])) < 30.0
