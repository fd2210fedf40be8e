"""The pinhole camera every clip is seen through.

World coordinates are camera coordinates: the camera sits at the origin and looks
along +z (depth); +x is to the right and +y is *up*. Image coordinates are
continuous pixels: ``u`` grows to the right and ``v`` downwards, and pixel
``(row i, column j)`` covers ``[j, j+1) x [i, i+1)``, so its centre is at
``(j + 0.5, i + 0.5)``. The principal point is the image centre ``(W/2, H/2)``.

The focal length in pixels follows from the horizontal field of view:
``f = (W / 2) / tan(fov / 2)``; with the default 60 degrees that is
``0.866 * W`` (55.4 px for a 64-pixel-wide image, 27.7 px for 32). Pixels are
square, so the same ``f`` applies vertically.

A sphere of radius ``R`` at depth ``z`` is drawn as a disc of radius ``f * R / z``
pixels (the small-angle approximation of its silhouette, exact enough for the
depths used here: at z >= 4 and R = 0.45 the true silhouette differs by < 0.7 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at the origin looking along +z."""

    width: int  # pixels
    height: int  # pixels
    fov_degrees: float = 60.0  # horizontal field of view, degrees

    @property
    def focal_px(self) -> float:
        """Focal length in pixels: (W/2) / tan(fov/2)."""
        return (self.width / 2.0) / math.tan(math.radians(self.fov_degrees) / 2.0)

    @property
    def cx(self) -> float:
        """Principal point, horizontal (pixels)."""
        return self.width / 2.0

    @property
    def cy(self) -> float:
        """Principal point, vertical (pixels, downwards)."""
        return self.height / 2.0


def pinhole(x: Any, y: Any, z: Any, *, focal: float, cx: float, cy: float) -> tuple[Any, Any]:
    """The pinhole camera: ``u = cx + f x / z``, ``v = cy - f y / z`` (v points down, world y up).

    Plain arithmetic, so numpy arrays and torch tensors alike (the trainer's mask target uses
    it on tensors; :func:`project` on arrays): one definition of the geometry.
    """
    return cx + focal * x / z, cy - focal * y / z


def project(point: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Project world points ``(..., 3)`` to continuous pixel coordinates ``(u, v)``.

    ``u = cx + f * x / z`` and ``v = cy - f * y / z`` (the image's v axis points down
    while world y points up). Works on one point (returns scalars as 0-d arrays) or
    on any leading shape.
    """
    p = np.asarray(point, dtype=np.float64)
    return pinhole(p[..., 0], p[..., 1], p[..., 2], focal=camera.focal_px, cx=camera.cx, cy=camera.cy)


def apparent_radius(z: np.ndarray | float, radius: float, camera: Camera) -> np.ndarray:
    """Radius in pixels of a sphere of world radius ``radius`` at depth ``z``: f * R / z."""
    return camera.focal_px * radius / np.asarray(z, dtype=np.float64)
