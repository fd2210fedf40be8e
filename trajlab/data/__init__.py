"""The seeded trajectory-video dataset: generator, renderer, cached build and load.

Importing this package pulls in numpy only (no torch, no matplotlib, no sympy), so
building and loading stay fast.
"""

from trajlab.data.build import BuildResult, build_dataset, build_dataset_detailed, render_samples
from trajlab.data.camera import Camera, apparent_radius, project
from trajlab.data.dataset import Dataset, Split, load_dataset
from trajlab.data.manifest import DatasetError, read_manifest
from trajlab.data.render import RenderInfo, RenderSettings, render_batch, render_clip, render_clip_fullframe
from trajlab.data.trajectories import Trajectory, TrajectoryGenerator, evaluate_equations

__all__ = [
    "BuildResult",
    "Camera",
    "Dataset",
    "DatasetError",
    "RenderInfo",
    "RenderSettings",
    "Split",
    "Trajectory",
    "TrajectoryGenerator",
    "apparent_radius",
    "build_dataset",
    "build_dataset_detailed",
    "evaluate_equations",
    "load_dataset",
    "project",
    "read_manifest",
    "render_batch",
    "render_clip",
    "render_clip_fullframe",
    "render_samples",
]
