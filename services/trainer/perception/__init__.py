"""The object-track perception: an optional part of a branch that reads any encoder's taps.

One idea per module: ``stem`` (the input stem and the frames' value), ``taps`` (which of the
encoder's taps it reads, through the contract), ``readout`` (per-frame mask and depth -> 3D
track), ``camera_shift``, ``depth_cues``, ``sphere_fit``, ``motion`` (the track's shape as
features) and ``track_classifier``. A branch switches it on or off (``ModelArgs.track``).
"""

from __future__ import annotations

from services.trainer.encoders.contract import TapSpec
from services.trainer.perception.readout import Track, TrackReadout

__all__ = ["Track", "TrackReadout", "create_track_perception"]


def create_track_perception(
    *,
    taps: dict[str, TapSpec],
    frames: int,
    height: int,
    width: int,
    focal_px: float,
    depth_cues: bool = False,
    camera_shift: int = 0,
    sphere_fit: bool = False,
    object_radius: float = 0.0,
    spreads: bool = False,
) -> TrackReadout:
    """The track readout on an encoder's ``taps``.
    ::

        taps {name: (N, C_i, T/st_i, H/ss_i, W/ss_i)}, stem (N, C, T, H, W)
          -> Track(points (N, T, 3), mask_logits (N, T, H, W), shift (N, T, 2)?, fitted (N, T, 3)?)
          -> summary (N, 256) for the branch's projection
    """
    return TrackReadout(
        taps=taps,
        frames=frames,
        height=height,
        width=width,
        focal_px=focal_px,
        depth_cues=depth_cues,
        camera_shift=camera_shift,
        object_radius=object_radius if sphere_fit else 0.0,
        spreads=spreads,
    )
