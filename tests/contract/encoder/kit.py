"""A tiny stand-in for a trained model, exported and published the way the trainer does.

torch is a dev dependency (not in the encoder image): the model is built and
exported here, and the encoder only ever sees the ONNX file and metadata.json.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from trajlab.modelrepo import publish_version
from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD
from trajlab.profiles import CLASS_NAMES

FRAMES, HEIGHT, WIDTH, CHANNELS = 8, 32, 32, 3  # clip shape the tiny model takes
HORIZON = 4  # forecast frames
EMBED = 8  # embedding size
FPS = 8.0  # frames per second


def export_tiny_model(path: Path, *, seed: int = 0, batch_axis: bool = True, track: bool = False) -> Path:
    """Build a small 3D CNN with the contract's outputs and export it to ONNX at ``path``.

    ``track``: also the optional outputs of a model with the track perception, ``track``
    (N, FRAMES, 3) and ``track_confidence`` (N, FRAMES), read off each frame's mean colour.
    """
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(CHANNELS, 6, kernel_size=3, stride=2, padding=1)
            self.pool = nn.AdaptiveAvgPool3d(1)
            self.embed = nn.Linear(6, EMBED)
            self.cls = nn.Linear(EMBED, len(CLASS_NAMES))
            self.fc = nn.Linear(EMBED, HORIZON * 3)

        def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            h = self.pool(torch.relu(self.conv(clip))).flatten(1)
            e = torch.tanh(self.embed(h))
            probs = torch.softmax(self.cls(e) * 4.0, dim=1)
            outs = (probs, self.fc(e).reshape(-1, HORIZON, 3), e)
            if not track:
                return outs
            per_frame = clip.mean(dim=(3, 4)).transpose(1, 2)  # (N, T, C): each frame's mean colour
            return (*outs, per_frame * 2.0 + 5.0, torch.sigmoid(per_frame.sum(-1)))

    torch.manual_seed(seed)
    model = Tiny().eval()
    x = torch.zeros(2, CHANNELS, FRAMES, HEIGHT, WIDTH)
    names = ["probabilities", "forecast", "embedding"] + (["track", "track_confidence"] if track else [])
    axes = {name: {0: "batch"} for name in ["clip", *names]}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but 4x faster here than dynamo=True, and
        # the encoder only sees the resulting ONNX graph either way.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["clip"],
            output_names=names,
            dynamic_axes=axes if batch_axis else None,
            opset_version=17,
            dynamo=False,
        )
    return path


TRACK_OUTPUT_SPECS = [
    {"name": "track", "shape": ["batch", FRAMES, 3]},
    {"name": "track_confidence", "shape": ["batch", FRAMES]},
]


def metadata(branch: str, **overrides: Any) -> dict[str, Any]:
    """metadata.json content for publish_version (it fills version, sha256, size, time).

    A model exported with ``track=True`` is published with
    ``outputs=kit.metadata(b)["outputs"] + kit.TRACK_OUTPUT_SPECS``."""
    meta: dict[str, Any] = {
        "branch": branch,
        "branch_config": {"name": branch, "encoder": "tiny", "enhancement": "none"},
        "profile": "test",
        "input": {
            "name": "clip",
            "layout": "NCTHW",
            "frames": FRAMES,
            "height": HEIGHT,
            "width": WIDTH,
            "channels": CHANNELS,
            "dtype": "float32",
            "mean": list(DEFAULT_MEAN),
            "std": list(DEFAULT_STD),
        },
        "class_names": list(CLASS_NAMES),
        "outputs": [
            {"name": "probabilities", "shape": ["batch", len(CLASS_NAMES)]},
            {"name": "forecast", "shape": ["batch", HORIZON, 3]},
            {"name": "embedding", "shape": ["batch", EMBED]},
        ],
        "forecast_horizon": HORIZON,
        "fps": FPS,
        "embedding_dim": EMBED,
        "opset": 17,
        "framework": "torch-test",
        "validation_metrics": {"accuracy": 0.25},
        "dataset_manifest_sha256": "0" * 64,
    }
    meta.update(overrides)
    return meta


def publish(root: Path, branch: str, onnx_path: Path, **overrides: Any) -> int:
    version, _ = publish_version(root, branch, onnx_path, metadata(branch, **overrides))
    return version


def random_clips(n: int, seed: int = 0) -> np.ndarray:
    """(n, T, H, W, C) uint8 clips of noise with a bright moving square, so outputs differ per clip."""
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 60, size=(n, FRAMES, HEIGHT, WIDTH, CHANNELS), dtype=np.uint8)
    for i in range(n):
        x0, y0 = rng.integers(0, WIDTH - 8, size=2)
        for t in range(FRAMES):
            y, x = (y0 + t) % (HEIGHT - 6), (x0 + 2 * t) % (WIDTH - 6)
            clips[i, t, y : y + 6, x : x + 6] = 255
    return clips
