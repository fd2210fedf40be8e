"""Every standard backbone of the zoo, as a user adds it: a few lines of branches YAML, trained
by the real trainer, exported through the parity gate, published, and served by a real encoder
server whose answers match onnxruntime run on the published file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from services.trainer import zoo
from trajlab.clients.encoder import EncoderClient
from trajlab.preprocess import to_model_input
from trajlab.profiles import DatasetConfig, ModelConfig, Profile, TrainingConfig, load_branches

# 16 clips of 8x32x32 (s3d needs sides that are multiples of 32), one epoch each.
PROFILE = Profile(
    name="tiny-zoo",
    dataset=DatasetConfig(samples=16, frames=8, height=32, width=32, horizon=4, fps=8.0),
    training=TrainingConfig(epochs=1, batch_size=8, parity_clips=4, threads=1, checkpoint_every=1),
    model=ModelConfig(),
)
STANDARD = sorted(
    e.name for e in zoo.load_encoders() if zoo.origin_of(e) in ("vendored torchvision", "transformers")
)


def _branch_yaml(path: Path) -> Path:
    """One branch per standard backbone; the track perception on where the encoder's taps allow."""
    size = zoo.InputSize(9, PROFILE.dataset.frames, PROFILE.dataset.height, PROFILE.dataset.width)
    entries = []
    for name in STANDARD:
        track, _ = zoo.perception_fit(zoo.build(name, size).taps)
        entries.append({"name": f"zoo-{name}", "encoder": name, "enhancement": "none", "track": track,
                        "describer_backend": "analytic"})
    path.write_text(yaml.safe_dump({"branches": entries}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict], Path]:
    from services.trainer.branch import known_parts
    from services.trainer.training import RunConfig, Trainer

    tmp = tmp_path_factory.mktemp("zoo-served")
    branches = load_branches(_branch_yaml(tmp / "zoo.yaml"), known=known_parts())
    results = {}
    for name, branch in sorted(branches.items()):
        cfg = RunConfig(branch=branch, profile=PROFILE, data_dir=tmp / "data", run_dir=tmp / "runs" / name,
                        model_repo=tmp / "models", progress=False)
        results[name] = Trainer(cfg).run()
    return tmp / "models", results, tmp / "data"


def test_the_zoo_has_the_standard_backbones() -> None:
    assert len(STANDARD) >= 6 and {"r3d", "mc3", "r2plus1d", "s3d"} <= set(STANDARD)
    assert {"videomae", "timesformer", "vivit"} & set(STANDARD)


@pytest.mark.slow
def test_every_standard_backbone_trains_exports_and_is_served_exactly(trained, start_server) -> None:
    repo, results, data = trained
    from trajlab.data import build_dataset, load_dataset
    from trajlab.modelrepo import read_metadata

    for name, res in results.items():
        assert res["model_version"] == 1, name
        assert res["onnx_parity_max_abs_diff"] <= 1e-4, name
    clips = load_dataset(build_dataset(PROFILE.dataset, data)).val.clips[:2]
    srv = start_server(model_repo=repo)
    with EncoderClient(f"127.0.0.1:{srv.port}", timeout=30) as enc:
        enc.wait_until_serving(60)
        served = {m.branch: m for m in enc.list_models()}
        assert set(served) == set(results)
        for name in results:
            meta = read_metadata(repo / name / "1")
            assert served[name].has_track == meta.has_track
            sess = ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
            for clip in clips:
                ref = sess.run(None, {"clip": to_model_input(clip, meta.input.mean, meta.input.std)})
                a = enc.analyze(clip, branch=name)
                probs = np.array(list(a.classification.probabilities.values()))
                np.testing.assert_allclose(probs, ref[0][0], atol=1e-5, err_msg=name)
                np.testing.assert_allclose(a.forecast.positions, ref[1][0], atol=1e-4, err_msg=name)


def test_an_encoder_that_cannot_be_exported_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A branch whose encoder fails the ONNX parity gate fails at once, naming the encoder and
    why, before an epoch is spent and with nothing published."""
    import torch

    from services.trainer.branch import known_parts
    from services.trainer.encoders.contract import VideoEncoder, VideoFeatures
    from services.trainer.registry import ENCODERS, Entry
    from services.trainer.training import RunConfig, Trainer

    class DataDependent(VideoEncoder):
        def __init__(self, **_: int) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(1, 4)
            self.out_dim, self.taps = 4, {}

        def forward(self, clip: torch.Tensor) -> VideoFeatures:
            x = clip.mean(dim=(1, 2, 3, 4))[:, None]
            return VideoFeatures(self.proj(x * 2 if x.sum() > 0 else x), {})  # not traceable

    def build(*, in_channels: int, frames: int, height: int, width: int) -> VideoEncoder:
        return DataDependent()

    monkeypatch.setitem(ENCODERS._entries, "data_dependent", Entry("data_dependent", build, "test", {}))
    p = tmp_path / "b.yaml"
    p.write_text(yaml.safe_dump({"branches": [{"name": "u", "encoder": "data_dependent",
                                                "enhancement": "none", "track": False}]}))
    branch = load_branches(p, known=known_parts())["u"]
    cfg = RunConfig(branch=branch, profile=PROFILE, data_dir=tmp_path / "data", run_dir=tmp_path / "run",
                    model_repo=tmp_path / "models", progress=False)
    t = Trainer(cfg)
    with pytest.raises(Exception, match=r"encoder data_dependent: cannot be used in a branch - the ONNX"):
        t.run()
    assert t.status.state == "failed" and "data-dependent" in t.status.error
    assert t.status.epoch == 0 and not (tmp_path / "models" / "u").exists()
