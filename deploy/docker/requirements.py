"""Print the pip requirements of one service image, read from pyproject.toml.

The Dockerfile installs these in a dependency layer before the source is copied,
so a source change does not reinstall (or re-download) the dependencies:

    python3 requirements.py pyproject.toml encoder [--variant gpu] [--tools]

``--variant gpu`` swaps onnxruntime for onnxruntime-gpu and unpins torch, so the
GPU image takes the CUDA build from its own index. ``--tools`` prints only what the
build stage needs to generate stubs (grpcio-tools, pinned like the dev extra).
Standard library only: it runs on the bare base image before any venv exists.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# Extras that each image carries, beyond the core dependencies.
EXTRAS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder",),
    "trainer": ("trainer", "dataset"),
    "describer": ("describer",),
    "reporter": ("reporter",),
    "all": ("encoder", "trainer", "dataset", "describer", "reporter"),
}
# Packages of an extra that only the command line uses, never the service: left out of
# the image (the encoder extra carries the video readers of `trajlab classify`).
CLI_ONLY: dict[str, frozenset[str]] = {
    "encoder": frozenset({"imageio", "imageio-ffmpeg", "av"}),
}


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path, service: str, variant: str) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs: list[str] = list(project["dependencies"])
    for extra in EXTRAS[service]:
        reqs += project["optional-dependencies"][extra]
    out: list[str] = []
    seen: set[str] = set()
    for req in reqs:
        name = _name(req)
        if name in CLI_ONLY.get(service, frozenset()):
            continue
        if variant == "gpu" and name == "onnxruntime":
            # The CUDA and cuDNN runtime libraries come as pip packages with this extra.
            req, name = "onnxruntime-gpu[cuda,cudnn]>=1.20,<2", "onnxruntime-gpu"
        if variant == "gpu" and name == "torch":
            req = "torch"  # the GPU image's index (TORCH_INDEX_URL) decides the CUDA build
        if name not in seen:
            seen.add(name)
            out.append(req)
    return out


def tools(pyproject: Path) -> list[str]:
    dev = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["dev"]
    return [r for r in dev if _name(r) == "grpcio-tools"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pyproject", type=Path)
    ap.add_argument("service", choices=sorted(EXTRAS))
    ap.add_argument("--variant", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--tools", action="store_true")
    args = ap.parse_args(argv)
    lines = tools(args.pyproject) if args.tools else requirements(args.pyproject, args.service, args.variant)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
