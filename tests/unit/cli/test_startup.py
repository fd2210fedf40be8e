"""``trajlab`` starts without the heavy libraries its commands do not need.

A fresh interpreter (as a user's shell starts one) imports the CLI, or runs ``trajlab
explain/classify/forecast`` on a clip file through to the encoder call (here to an address
nothing listens on, so the command body's imports, the clip reading and the channel setup
all run), then reports which modules it loaded. torch alone takes seconds to import: a
module-level import of it (or of the trainer, matplotlib, scipy, ...) anywhere on these
paths fails here, naming the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
# Never needed to read a clip and call the services.
HEAVY = (
    "torch",
    "onnxruntime",
    "matplotlib",
    "scipy",
    "pandas",
    "sympy",
    "sklearn",
    "openai",
    "boto3",
    "services",  # the trainer, encoder, describer and reporter implementations
    "pydantic_settings",  # the profiles and service settings (the clients need neither)
)

_REPORT = "import json, sys; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"


def _modules_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_REPORT}"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_library_nor_numpy_or_grpc() -> None:
    loaded = _modules_after("import trajlab_cli")
    assert not loaded & {*HEAVY, "numpy", "grpc", "rich"}, "`trajlab --help` would import them"


@pytest.mark.parametrize("command", ["explain", "classify", "forecast"])
def test_a_clip_command_loads_no_heavy_library(command: str, tmp_path: Path) -> None:
    clip = tmp_path / "clip.npz"
    np.savez_compressed(clip, clip=np.zeros((8, 32, 32, 3), np.uint8), fps=np.float32(8))
    argv = [command, str(clip), "--target", "127.0.0.1:1", "--timeout", "1", "--json"]
    if command == "explain":
        argv += ["--describer", "127.0.0.1:1"]
    code = (
        "from typer.testing import CliRunner\n"
        "from trajlab_cli import app\n"
        f"res = CliRunner().invoke(app, {argv!r})\n"
        "assert res.exit_code == 1 and 'UNAVAILABLE' in res.output, res.output"
    )
    loaded = _modules_after(code)
    assert {"numpy", "grpc"} <= loaded  # the command did run: it read the clip and called
    assert not loaded & {*HEAVY, "rich"}, f"`trajlab {command} --json` imports them"


def test_the_describer_clients_class_names_are_the_profiles() -> None:
    """The client reads them off the wire's MotionClass enum rather than importing the profiles."""
    from trajlab.clients.describer import CLASS_NAMES
    from trajlab.profiles import CLASS_NAMES as PROFILE_CLASS_NAMES

    assert CLASS_NAMES == PROFILE_CLASS_NAMES
