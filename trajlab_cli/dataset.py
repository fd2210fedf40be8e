"""CLI: ``trajlab dataset build | preview | show``.

``build`` makes (or reuses) the seeded dataset of a profile; ``preview`` draws a
contact sheet (PNG) and an animation (GIF) of a few clips per class with the true
trajectory over them; ``show`` prints counts, config and the manifest hash.
Heavy imports (matplotlib, PIL) happen inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import numpy as np

    from trajlab.data import Dataset


def _profile_name(profile: str) -> str:
    p = Path(profile)
    return p.stem if p.suffix else profile


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    ds_app = typer.Typer(
        name="dataset",
        help="Build, preview and inspect the seeded clip dataset.",
        no_args_is_help=True,
    )
    ds_app.command("build")(build)
    ds_app.command("show")(show)
    ds_app.command("preview")(preview)
    app.add_typer(ds_app, name="dataset")


def build(
    profile: str = typer.Option(
        "seed", "--profile", "-p", help="Profile name (quick, seed) or a profile YAML path."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Dataset dir (default: ./data/<profile>)."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild even if the dir holds another or a corrupt dataset."
    ),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Override the profile's seed."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Render processes (default: up to 2, the cores here)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on a terminal only)."
    ),
) -> None:
    """Build the dataset of a profile (or reuse a matching cache) and print a one-line summary."""
    from trajlab.config import validate_model
    from trajlab.data import build_dataset_detailed
    from trajlab.profiles import DatasetConfig, load_profile
    from trajlab_cli.errors import writable_dir

    cfg = load_profile(profile).dataset
    if seed is not None:
        cfg = validate_model(DatasetConfig, {**cfg.model_dump(), "seed": seed}, "--seed")
    out_dir = writable_dir(out if out is not None else Path("data") / _profile_name(profile), "--out")
    show_bar = sys.stderr.isatty() if progress is None else progress
    res = build_dataset_detailed(cfg, out_dir, show_bar, force=force, workers=workers)
    split = " / ".join(f"{k} {v}" for k, v in res.counts.items())
    if res.reused:
        typer.echo(
            f"reused verified cache: {res.clips} clips ({split}), seed {cfg.seed}, "
            f"checked in {res.seconds:.2f} s -> {res.path}"
        )
    else:
        rate = res.clips / res.seconds if res.seconds > 0 else float("inf")
        typer.echo(
            f"built {res.clips} clips ({split}) of {cfg.frames}x{cfg.height}x{cfg.width}x3, "
            f"seed {cfg.seed}, in {res.seconds:.2f} s ({rate:.0f} clips/s) -> {res.path}"
        )


def show(
    data: Path = typer.Option(..., "--data", "-d", help="Dataset dir."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check every file's sha256."),
) -> None:
    """Print counts per class and split, the generating config and the manifest hash."""
    from rich.console import Console
    from rich.table import Table

    from trajlab.data import load_dataset
    from trajlab.profiles import CLASS_NAMES

    ds = load_dataset(data, verify=verify)
    console = Console()
    counts = Table(title=f"dataset {ds.path}")
    counts.add_column("split")
    for name in CLASS_NAMES:
        counts.add_column(name, justify="right")
    counts.add_column("total", justify="right")
    for s in ds.splits:
        c = ds.split(s).class_counts()
        counts.add_row(s, *(str(c[n]) for n in CLASS_NAMES), str(len(ds.split(s))))
    console.print(counts)
    cfg = Table(title="config", show_header=False)
    for key, value in ds.config.model_dump().items():
        cfg.add_row(key, str(value))
    console.print(cfg)
    clip_shape = "x".join(str(d) for d in ds.train.clips.shape[1:])
    console.print(f"clips: {clip_shape} uint8, {len(ds.train.times)} positions per clip (observed + horizon)")
    # Plain echo: rich would wrap the 64-character hash on a narrow terminal.
    typer.echo(f"manifest sha256: {ds.manifest_sha256}" + ("" if verify else " (files not verified)"))


def preview(
    data: Path = typer.Option(..., "--data", "-d", help="Dataset dir."),
    out: Path = typer.Option(Path("preview"), "--out", "-o", help="Where to write the PNG and GIF."),
    per_class: int = typer.Option(2, "--per-class", min=1, max=8, help="Clips shown per class."),
    frames: int = typer.Option(8, "--frames", min=2, max=64, help="Frames per row of the contact sheet."),
    split: str = typer.Option("val", "--split", help="train, val or test."),
) -> None:
    """Write contact_sheet.png (frames side by side, true trajectory over them) and clips.gif."""
    from trajlab.data import load_dataset
    from trajlab_cli.errors import writable_dir

    writable_dir(out, "--out")
    ds = load_dataset(data)
    png = write_contact_sheet(ds, out / "contact_sheet.png", per_class=per_class, frames=frames, split=split)
    gif = write_gif(ds, out / "clips.gif", per_class=per_class, split=split)
    typer.echo(f"wrote {png} and {gif}")


def _pick(ds: Dataset, split: str, per_class: int) -> list[int]:
    """The first ``per_class`` clips of each class, class by class."""
    import numpy as np

    labels = ds.split(split).labels
    rows: list[int] = []
    for c in range(int(labels.max()) + 1):
        rows.extend(int(i) for i in np.flatnonzero(labels == c)[:per_class])
    return rows


def _pixels(ds: Dataset, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projected (u, v) pixels of world positions, through the dataset's camera (jitter left out)."""
    from trajlab.data import Camera, project

    cfg = ds.config
    return project(positions, Camera(cfg.width, cfg.height, cfg.fov_degrees))


def write_contact_sheet(
    ds: Dataset, path: Path, *, per_class: int = 2, frames: int = 8, split: str = "val"
) -> Path:
    """PNG: one row per clip, ``frames`` frames side by side, the true path drawn over each frame.

    The observed part of the path is solid, the future (the frames to forecast) dashed,
    and a ring marks where the object is in that frame.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Circle

    from trajlab.data import Camera
    from trajlab.profiles import CLASS_NAMES

    sp = ds.split(split)
    rows = _pick(ds, split, per_class)
    T = sp.frames
    cols = np.unique(np.linspace(0, T - 1, min(frames, T)).round().astype(int))
    H, W = ds.config.height, ds.config.width
    focal = Camera(W, H, ds.config.fov_degrees).focal_px
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(1.3 * len(cols) + 2.6, 1.35 * len(rows)), squeeze=False
    )
    for r, idx in enumerate(rows):
        u, v = _pixels(ds, sp.positions[idx].astype(np.float64))
        r_px = focal * ds.config.sphere_radius / sp.positions[idx, :, 2].astype(np.float64)
        for c, t in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(sp.clips[idx, t], interpolation="nearest", extent=(0, W, H, 0))
            ax.plot(u[:T], v[:T], "-", color="white", lw=0.7, alpha=0.8)
            ax.plot(u[T - 1 :], v[T - 1 :], "--", color="yellow", lw=0.9)
            # A ring just outside the sphere's disc (data units), so the sphere itself stays visible.
            ring = r_px[t] + max(1.5, 0.06 * W)
            ax.add_patch(Circle((u[t], v[t]), ring, fill=False, ec="cyan", lw=0.6, alpha=0.8))
            ax.set_xlim(0, W)
            ax.set_ylim(H, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={sp.times[t]:.2f}s", fontsize=7)
        label = CLASS_NAMES[int(sp.labels[idx])]
        axes[r, 0].set_ylabel(
            f"{label}\n#{int(sp.sample_ids[idx])}", fontsize=8, rotation=0, ha="right", va="center"
        )
    fig.suptitle(
        f"{ds.path.name}: {split} clips, true path (white: observed, yellow dashed: "
        f"{ds.config.horizon} frames to forecast)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_gif(ds: Dataset, path: Path, *, per_class: int = 2, split: str = "val", scale: int = 4) -> Path:
    """Animated GIF: the chosen clips tiled (one row per class), upscaled, the true path drawn in."""
    import numpy as np
    from PIL import Image, ImageDraw

    sp = ds.split(split)
    rows = _pick(ds, split, per_class)
    n_classes = int(sp.labels.max()) + 1
    H, W = ds.config.height * scale, ds.config.width * scale
    T = sp.frames
    pad = 2
    grid_w = per_class * (W + pad) + pad
    grid_h = n_classes * (H + pad) + pad
    paths = []
    for idx in rows:
        u, v = _pixels(ds, sp.positions[idx].astype(np.float64))
        paths.append(list(zip((u * scale).tolist(), (v * scale).tolist(), strict=True)))
    # Tile position: row = class, column = rank within the class.
    seen: dict[int, int] = {}
    cells = []
    for idx in rows:
        c = int(sp.labels[idx])
        cells.append((pad + seen.get(c, 0) * (W + pad), pad + c * (H + pad)))
        seen[c] = seen.get(c, 0) + 1
    images = []
    for t in range(T):
        canvas = Image.new("RGB", (grid_w, grid_h), (20, 20, 20))
        for k, idx in enumerate(rows):
            frame = Image.fromarray(np.asarray(sp.clips[idx, t])).resize((W, H), Image.Resampling.NEAREST)
            draw = ImageDraw.Draw(frame)
            draw.line(paths[k][: t + 1], fill=(255, 255, 255), width=1)
            draw.line(paths[k][T - 1 :], fill=(255, 220, 0), width=2)  # the future to forecast
            canvas.paste(frame, cells[k])
        # An adaptive palette per frame: GIF's default web palette greys out the sphere colours.
        images.append(canvas.quantize(colors=255, method=Image.Quantize.MEDIANCUT))
    duration_ms = round(1000.0 / ds.config.fps)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path
