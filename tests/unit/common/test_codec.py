from __future__ import annotations

import numpy as np
import pytest

from trajlab.codec import array_to_clip, clip_to_array
from trajlab.common.v1 import common_pb2
from trajlab.errors import InvalidClip


def test_clip_round_trips_through_the_wire_format() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(16, 24, 32, 3), dtype=np.uint8)
    msg = array_to_clip(arr, fps=8.0)
    wire = msg.SerializeToString()
    back = clip_to_array(common_pb2.Clip.FromString(wire))
    assert back.shape == (16, 24, 32, 3)
    np.testing.assert_array_equal(back, arr)
    # Raw bytes, not repeated floats: the message is barely larger than the pixels.
    assert len(wire) < arr.nbytes + 64


def test_byte_length_that_disagrees_with_shape_is_refused_with_both_numbers() -> None:
    msg = common_pb2.Clip(frames=2, height=4, width=4, channels=3, pixels=b"\0" * 95)
    with pytest.raises(InvalidClip, match=r"95 bytes.*needs 96"):
        clip_to_array(msg)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("clip.frames", {"frames": 0, "height": 4, "width": 4, "channels": 3}),
        ("clip.height", {"frames": 1, "height": 100_000, "width": 4, "channels": 3}),
        ("clip.width", {"frames": 1, "height": 4, "width": 0, "channels": 3}),
        ("clip.channels", {"frames": 1, "height": 4, "width": 4, "channels": 2}),
    ],
)
def test_zero_or_absurd_dimensions_name_the_field(field: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidClip, match=field):
        clip_to_array(common_pb2.Clip(pixels=b"", **kwargs))
