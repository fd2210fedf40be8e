"""Clip-size checks shared by the standard backbones' builders (errors name the encoder)."""

from __future__ import annotations

from trajlab.errors import ConfigError


def check_clip(encoder: str, *, frames: int, height: int, width: int, time_div: int, space_div: int) -> None:
    """Refuse a clip size the encoder's strides or patches do not divide."""
    if frames % time_div or frames < time_div:
        raise ConfigError(f"encoder {encoder}: frames must be a multiple of {time_div}, got {frames}")
    for axis, size in (("height", height), ("width", width)):
        if size % space_div or size < space_div:
            raise ConfigError(f"encoder {encoder}: {axis} must be a multiple of {space_div}, got {size}")
