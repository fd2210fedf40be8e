"""The figure of ``trajlab explain --plot``: the model's track, its forecast and the fitted curve.

Left, in 3D (world units): the observed track (dots, shaded by confidence), the forecast
(crosses) and the describer's equations drawn over the observed and forecast times.
Right, in the image plane (pixels, as the camera saw it): the same three projected
through the dataset's pinhole camera (``trajlab.data.camera``), over the clip's last frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajlab.data.camera import Camera, project
from trajlab.equations import UnsafeEquation, parse_equations
from trajlab.explain import Explanation


def fitted_curve(ex: Explanation, samples: int = 200) -> np.ndarray | None:
    """The equations evaluated from the first observed to the last forecast time: (samples, 3)."""
    times = [t for t in (ex.track_times, ex.forecast_times) if t is not None and len(t)]
    if not times:
        return None
    all_t = np.concatenate(times)
    t = np.linspace(all_t.min(), all_t.max(), samples)
    try:
        eqs = parse_equations(ex.described.equations)
    except UnsafeEquation:
        return None
    curve = np.stack([e.evaluate(t) for e in eqs], axis=1)
    return curve if np.all(np.isfinite(curve)) else None


def save_figure(ex: Explanation, path: Path, *, camera: Camera, last_frame: np.ndarray | None = None) -> Path:
    """Write the two-panel figure to ``path`` (PNG, or whatever suffix matplotlib knows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = fitted_curve(ex)
    fig = plt.figure(figsize=(11, 5))
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax2 = fig.add_subplot(1, 2, 2)
    if ex.track is not None:
        conf = ex.track_confidence if ex.track_confidence is not None else np.ones(len(ex.track))
        ax3.scatter(*ex.track.T, c=conf, cmap="viridis", vmin=0, vmax=1, label="observed track (model)")
        u, v = project(ex.track, camera)
        ax2.scatter(u, v, c=conf, cmap="viridis", vmin=0, vmax=1, s=18, label="observed track")
    ax3.scatter(*ex.forecast.T, marker="x", color="tab:red", s=40, label="forecast")
    u, v = project(ex.forecast, camera)
    ax2.scatter(u, v, marker="x", color="tab:red", s=40, label="forecast")
    if curve is not None:
        ax3.plot(*curve.T, color="tab:orange", label="fitted equations")
        front = curve[:, 2] > 1e-6  # only what lies in front of the camera projects
        u, v = project(curve[front], camera)
        ax2.plot(u, v, color="tab:orange", label="fitted equations")
    ax3.set_xlabel("x")
    ax3.set_ylabel("y")
    ax3.set_zlabel("z (depth)")
    ax3.legend(loc="upper left", fontsize=8)
    ax3.set_title(f"{ex.branch} v{ex.version}: {ex.class_name} ({ex.probabilities[ex.class_name]:.0%})")
    if last_frame is not None:
        ax2.imshow(last_frame, extent=(0, camera.width, camera.height, 0), alpha=0.6, zorder=0)
    ax2.set_xlim(0, camera.width)
    ax2.set_ylim(camera.height, 0)
    ax2.set_aspect("equal")
    ax2.set_xlabel("u (pixels)")
    ax2.set_ylabel("v (pixels)")
    ax2.set_title(f"image plane; equations by {ex.described.backend_used} on the {ex.fitted_on}")
    ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
