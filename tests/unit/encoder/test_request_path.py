"""The request path's copies: pixels decoded as a view, preprocessing in one output array."""

from __future__ import annotations

import numpy as np
import pytest

from trajlab.codec import array_to_clip, clip_to_array
from trajlab.common.v1 import common_pb2
from trajlab.encoder.v1 import encoder_pb2
from trajlab.errors import InvalidClip
from trajlab.preprocess import to_model_input


def _reference(clips: np.ndarray, mean, std) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The straightforward formula the trainer's models were trained with."""
    x = clips if clips.ndim == 5 else clips[None]
    m = np.asarray(mean, dtype=np.float32).reshape(1, 1, 1, 1, -1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 1, 1, 1, -1)
    out = (x.astype(np.float32) * np.float32(1.0 / 255.0) - m) / s
    return np.ascontiguousarray(out.transpose(0, 4, 1, 2, 3))


def test_decoded_pixels_are_a_read_only_view_of_the_request_bytes() -> None:
    clip = np.random.default_rng(0).integers(0, 256, size=(4, 6, 5, 3), dtype=np.uint8)
    wire = encoder_pb2.ClassifyRequest(clip=array_to_clip(clip, fps=8.0)).SerializeToString()
    arr = clip_to_array(encoder_pb2.ClassifyRequest.FromString(wire).clip)
    np.testing.assert_array_equal(arr, clip)
    owner = arr
    while isinstance(owner, np.ndarray):  # views of views (reshape) down to who owns the memory
        owner = owner.base
    assert isinstance(owner, bytes) and len(owner) == clip.size  # a view of the bytes: no pixel copied
    assert not arr.flags.writeable  # nobody can scribble on the request


@pytest.mark.parametrize("extra", [-1, 1, -60])
def test_decode_refuses_pixels_of_the_wrong_size_naming_both(extra: int) -> None:
    pixels = bytes(4 * 6 * 5 * 3 + extra)
    msg = common_pb2.Clip(frames=4, height=6, width=5, channels=3, pixels=pixels)
    with pytest.raises(InvalidClip, match=rf"clip.pixels has {len(pixels)} bytes.*needs 360"):
        clip_to_array(msg)


@pytest.mark.parametrize("n", [1, 3])
def test_preprocessing_gives_the_same_bits_as_the_training_formula(n: int) -> None:
    rng = np.random.default_rng(n)
    clips = rng.integers(0, 256, size=(n, 4, 6, 5, 3), dtype=np.uint8)
    for mean, std in [((0.2, 0.2, 0.2), (0.25, 0.25, 0.25)), ((0.1, 0.37, 0.61), (0.3, 0.17, 0.29))]:
        got = to_model_input(clips, mean, std)
        assert got.dtype == np.float32 and got.shape == (n, 3, 4, 6, 5) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, _reference(clips, mean, std))
    # a single (T, H, W, C) clip, a decoded read-only view, and float pixels take the same path
    view = clip_to_array(array_to_clip(clips[0]))
    np.testing.assert_array_equal(to_model_input(view), _reference(clips[0], (0.2,) * 3, (0.25,) * 3))
    as_float = clips.astype(np.float64)
    np.testing.assert_array_equal(to_model_input(as_float), _reference(clips, (0.2,) * 3, (0.25,) * 3))


def test_preprocessing_refuses_a_clip_without_frames_axis() -> None:
    with pytest.raises(ValueError, match=r"clips must be \(N, T, H, W, C\)"):
        to_model_input(np.zeros((6, 5, 3), dtype=np.uint8))
