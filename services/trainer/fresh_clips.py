"""Fresh training clips: each epoch trains on clips newly drawn from the dataset's generator.

With ``training.fresh_clips_per_epoch`` N > 0, epoch e trains on N clips rendered for it by the
shared generator and renderer of ``trajlab.data`` with the dataset's config (same classes,
camera, scene and ranges), instead of the stored train split. A model then never sees a
training clip twice, which is what a small stored train split cannot give.

Seeds. A stored dataset sample i draws from ``SeedSequence(dataset seed, spawn_key=(0, i))``
and its split plan from ``spawn_key=(1,)`` (``trajlab.data``); train, val and test are such
samples. Fresh clip j of epoch e draws from ``SeedSequence(dataset seed,
spawn_key=(FRESH_STREAM, training seed, e, j))``: a spawn key of another length and first
element, so the stream is disjoint from every stored sample's, the validation and held-out
test splits' included, and neither split is ever read to make training data. The clips of an
epoch depend on (dataset config, training seed, epoch) only, so a run resumed from a
checkpoint renders the same clips as an uninterrupted one and reaches the same weights.
Clip j has class j % 4 (balanced); the step loop's per-epoch permutation shuffles them.

Camera-jitter augmentation (``training.augment_camera_jitter`` J above the dataset's jitter
j0): each chunk of clips rendered together gets its own jitter, drawn uniformly in [j0, J]
from ``spawn_key=(FRESH_STREAM, training seed, e, first clip of the chunk, JITTER_DRAW)`` (five
long, so apart from every clip's key). The renderer's margin follows the jitter, as in a
dataset rendered with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from trajlab.data import render_samples
from trajlab.profiles import CLASS_NAMES, DatasetConfig

# First element of a fresh clip's spawn key. The dataset's keys start with 0 (samples) and 1
# (the split plan); this one is 2 and four long, so no fresh key equals a dataset's key.
FRESH_STREAM = 2
_CHUNK = 64  # clips rendered per render_batch call, and per jitter draw
JITTER_DRAW = 0  # last element of a chunk's jitter-draw spawn key


@dataclasses.dataclass(frozen=True)
class FreshClips:
    """One epoch's training clips; the fields the step loop reads from a dataset split."""

    clips: np.ndarray  # uint8 (N, T, H, W, 3)
    labels: np.ndarray  # int64 (N,): index into CLASS_NAMES
    positions: np.ndarray  # float32 (N, T + horizon, 3): world units, observed frames first

    def __len__(self) -> int:
        return len(self.labels)


def fresh_spawn_key(training_seed: int, epoch: int, j: int) -> tuple[int, int, int, int]:
    """The spawn key of fresh clip ``j`` of ``epoch`` (under the dataset's seed)."""
    return (FRESH_STREAM, int(training_seed), int(epoch), int(j))


def chunk_jitter(
    config: DatasetConfig, training_seed: int, epoch: int, start: int, max_jitter: float
) -> float:
    """The camera jitter of the chunk of fresh clips starting at clip ``start``: uniform in
    [dataset's, ``max_jitter``]; the dataset's when ``max_jitter`` is not above it."""
    low = config.camera_jitter
    if max_jitter <= low:
        return low
    key = (FRESH_STREAM, int(training_seed), int(epoch), int(start), JITTER_DRAW)
    u = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=key)).random()
    return float(low + (max_jitter - low) * u)


def _with_jitter(config: DatasetConfig, jitter: float) -> DatasetConfig:
    return config.model_copy(update={"camera_jitter": jitter})


def fresh_clips(
    config: DatasetConfig, training_seed: int, epoch: int, n: int, max_jitter: float = 0.0
) -> FreshClips:
    """The ``n`` fresh training clips of ``epoch``: same config, seeds, epoch and ``max_jitter``
    (the camera-jitter augmentation's ceiling; 0 = none) = same bytes."""
    if n < 1:
        raise ValueError(f"fresh clips per epoch must be at least 1, got {n}")
    clips = np.empty((n, config.frames, config.height, config.width, 3), np.uint8)
    positions = np.empty((n, config.frames + config.horizon, 3), np.float32)
    labels = (np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    for start in range(0, n, _CHUNK):
        js = range(start, min(n, start + _CHUNK))
        rngs = [
            np.random.default_rng(
                np.random.SeedSequence(config.seed, spawn_key=fresh_spawn_key(training_seed, epoch, j))
            )
            for j in js
        ]
        jitter = chunk_jitter(config, training_seed, epoch, start, max_jitter)
        cfg = config if jitter == config.camera_jitter else _with_jitter(config, jitter)
        trajs = render_samples(cfg, labels[start : start + len(js)], rngs, clips[start : start + len(js)])
        positions[start : start + len(js)] = np.stack([t.positions for t in trajs])
    return FreshClips(clips=clips, labels=labels, positions=positions)


def training_data(dataset: DatasetConfig, training: Any, stored_train_clips: int) -> dict[str, Any]:
    """What a run trained on, for results.json: the stored train split or fresh clips."""
    epochs, n = training.epochs, training.fresh_clips_per_epoch
    if n <= 0:
        return {
            "source": "train_split",
            "clips_per_epoch": stored_train_clips,
            "distinct_clips": stored_train_clips,
        }
    return {
        "source": "fresh_clips",
        "clips_per_epoch": n,
        "distinct_clips": n * epochs,
        "seed_stream": (
            f"SeedSequence({dataset.seed}, spawn_key=({FRESH_STREAM}, {training.seed}, epoch, j)), "
            "disjoint from the dataset's train/val/test samples"
        ),
        "stored_train_clips_used_for": "forecast and track normalisation statistics only",
        **(
            {"camera_jitter": f"per {_CHUNK} clips, uniform in [{dataset.camera_jitter:g}, {aug:g}] px"}
            if (aug := getattr(training, "augment_camera_jitter", 0.0)) > dataset.camera_jitter
            else {}
        ),
    }
