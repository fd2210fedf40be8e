"""Which of an encoder's taps the track perception reads, through the encoder contract only.

The perception needs a fine map (for the mask's edges) and a coarser one (for a mask and depth
map that see more context), both with a time axis: it picks the two finest taps in the order
of their strides. An encoder with one tap gives both; one with none cannot carry the perception.
"""

from __future__ import annotations

import dataclasses

from services.trainer.encoders.contract import TapSpec


@dataclasses.dataclass(frozen=True)
class TapChoice:
    """The taps the readout reads and how much each is upsampled back to the clip's (T, H, W)."""

    fine: str
    coarse: str
    fine_spec: TapSpec
    coarse_spec: TapSpec

    @staticmethod
    def scale(spec: TapSpec) -> tuple[float, float, float]:
        return (float(spec.temporal_stride), float(spec.spatial_stride), float(spec.spatial_stride))


def choose_taps(taps: dict[str, TapSpec], *, frames: int, height: int, width: int) -> TapChoice:
    """The two finest taps of ``taps`` (by spatial, then temporal stride) whose strides divide the clip.

    Raises ValueError naming what is missing when the perception cannot attach.
    """
    usable = [
        (name, spec)
        for name, spec in taps.items()
        if frames % spec.temporal_stride == 0 and height % spec.spatial_stride == 0
        and width % spec.spatial_stride == 0
    ]
    if not usable:
        raise ValueError(
            "perception: the encoder exposes no tap whose strides divide the clip "
            f"(T={frames}, H={height}, W={width}; taps: {sorted(taps) or 'none'}); "
            "set perception off for this branch"
        )
    usable.sort(key=lambda item: (item[1].spatial_stride, item[1].temporal_stride))
    fine = usable[0]
    coarse = usable[1] if len(usable) > 1 else usable[0]
    return TapChoice(fine[0], coarse[0], fine[1], coarse[1])
