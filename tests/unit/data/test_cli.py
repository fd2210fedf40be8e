"""``trajlab dataset build | show | preview`` through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from trajlab_cli import app

PROFILE = """name: tiny
dataset:
  samples: 16
  frames: 6
  horizon: 4
  height: 24
  width: 24
  clutter: 1
  transients: 1
"""


@pytest.fixture()
def profile(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(PROFILE)
    return p


def test_build_show_preview(profile: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "data"
    res = runner.invoke(app, ["dataset", "build", "--profile", str(profile), "--out", str(out), "--progress"])
    assert res.exit_code == 0, res.output
    assert "built 16 clips (train 12 / val 4)" in res.output and "clips/s" in res.output
    assert (out / "manifest.json").is_file() and (out / "train" / "clips.npy").is_file()

    res = runner.invoke(app, ["dataset", "build", "--profile", str(profile), "--out", str(out)])
    assert res.exit_code == 0 and "reused" in res.output

    res = runner.invoke(app, ["dataset", "show", "--data", str(out)])
    assert res.exit_code == 0, res.output
    assert "linear" in res.output and "manifest sha256" in res.output

    prev = tmp_path / "prev"
    res = runner.invoke(
        app,
        ["dataset", "preview", "--data", str(out), "--out", str(prev), "--per-class", "1", "--frames", "4"],
    )
    assert res.exit_code == 0, res.output
    png = Image.open(prev / "contact_sheet.png")
    assert png.size[0] > 400 and png.size[1] > 300
    gif = Image.open(prev / "clips.gif")
    assert gif.n_frames == 6  # one GIF frame per clip frame


def test_seed_override_and_refusal_without_force(profile: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "data"
    assert runner.invoke(app, ["dataset", "build", "-p", str(profile), "-o", str(out)]).exit_code == 0
    res = runner.invoke(app, ["dataset", "build", "-p", str(profile), "-o", str(out), "--seed", "3"])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "seed: cache has 0, expected 3" in res.stderr
    res = runner.invoke(
        app, ["dataset", "build", "-p", str(profile), "-o", str(out), "--seed", "3", "--force"]
    )
    assert res.exit_code == 0 and "seed 3" in res.output


def test_bad_profile_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndataset:\n  samples: -4\n")
    res = CliRunner().invoke(app, ["dataset", "build", "--profile", str(bad), "--out", str(tmp_path / "d")])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "dataset.samples" in res.stderr
