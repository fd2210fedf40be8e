"""The model repository: ``<root>/<branch>/<version>/{model.onnx, metadata.json}``.

Written by trainers, read by the encoder (Triton's layout). A version directory
appears atomically: it is built under ``<root>/<branch>/.tmp-*`` (files written
and fsynced), then renamed to its integer name, so a reader that lists only
integer-named directories never sees a half-written model. Versions increase
monotonically per branch (allocated under a file lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trajlab.atomic import fsync_dir
from trajlab.errors import InvalidArgument

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
SCHEMA_VERSION = 1
MAX_METADATA_BYTES = 1024 * 1024  # a metadata.json larger than this is refused


class TensorSpec(BaseModel):
    """One ONNX input or output: name, shape (ints, or a string for a dynamic axis), dtype."""

    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int | str]
    dtype: str = "float32"


class InputSpec(BaseModel):
    """What the model expects and how raw clips are turned into it (trajlab.preprocess)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "clip"
    layout: str = "NCTHW"
    frames: int = Field(gt=0)
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: int = Field(3, gt=0)
    dtype: str = "float32"
    # preprocessing: x = (uint8 / 255 - mean) / std, per channel
    mean: list[float]
    std: list[float]


# The model contract's outputs. Every model has the first three; a model with the
# object-track perception also exports its estimate of the observed track.
REQUIRED_OUTPUTS = ("probabilities", "forecast", "embedding")
TRACK_OUTPUTS = ("track", "track_confidence")  # (N, frames, 3) world units; (N, frames) in [0, 1]


class ModelCost(BaseModel):
    """What the model costs to run (services/trainer/cost.py), when the trainer counted it."""

    model_config = ConfigDict(extra="forbid")
    parameters: int = Field(ge=0)  # trainable parameters
    flops_per_clip: int = Field(ge=0)  # forward FLOPs of one clip, 2 per multiply-add


class ModelMetadata(BaseModel):
    """metadata.json of one model version. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    branch: str
    version: int = Field(ge=1)
    branch_config: dict[str, Any]
    profile: str
    input: InputSpec
    class_names: list[str]
    # probabilities (N, K), forecast (N, horizon, 3), embedding (N, D) [, track (N, T, 3),
    # track_confidence (N, T)]
    outputs: list[TensorSpec]
    forecast_horizon: int = Field(gt=0)
    fps: float = Field(gt=0)  # frames per second of the clips the model was trained on
    embedding_dim: int = Field(gt=0)
    opset: int
    framework: str
    validation_metrics: dict[str, float]
    dataset_manifest_sha256: str
    model_sha256: str
    model_size_bytes: int
    created_at: str  # RFC 3339 UTC
    cost: ModelCost | None = None  # optional: metadata written before it was counted has none

    @property
    def has_track(self) -> bool:
        """True when the model exports its own observed track (TRACK_OUTPUTS)."""
        return set(TRACK_OUTPUTS) <= {t.name for t in self.outputs}

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs a session of this model is run for, in this order."""
        return REQUIRED_OUTPUTS + (TRACK_OUTPUTS if self.has_track else ())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def _branch_lock(branch_dir: Path) -> Iterator[None]:
    branch_dir.mkdir(parents=True, exist_ok=True)
    with (branch_dir / ".lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


MAX_VERSION = 2**32 - 1  # ModelRef.version is a uint32 (0 = "the newest")
_VERSION_TEXT = re.compile(r"[1-9][0-9]{0,9}")  # ASCII only: str.isdigit() also takes "²", "٣"


def parse_version(name: str) -> tuple[int | None, str]:
    """(version, "") for a version directory's name, or (None, why it is not one).

    A version is canonical ASCII decimal (no sign, no leading zero) in 1..MAX_VERSION,
    the range of the contract's uint32 field. The one parser every reader uses.
    """
    if not _VERSION_TEXT.fullmatch(name):
        return None, "not_a_number"
    value = int(name)
    if value > MAX_VERSION:
        return None, "out_of_range"
    return value, ""


def scan_versions(root: Path, branch: str) -> tuple[list[int], list[tuple[str, str]]]:
    """(complete versions ascending, [(entry name, reason)] of entries skipped as versions).

    Temp directories (".tmp-...") and dotfiles are not versions and not reported;
    anything else that is not a version directory is skipped with its reason
    ("not_a_number", "out_of_range", "not_a_directory", "symlink").
    """
    d = Path(root) / branch
    if not d.is_dir():
        return [], []
    out: list[int] = []
    skipped: list[tuple[str, str]] = []
    for child in d.iterdir():
        name = child.name
        if name.startswith("."):
            continue
        version, why = parse_version(name)
        if version is None:
            skipped.append((name, why))
        elif child.is_symlink():
            skipped.append((name, "symlink"))
        elif not child.is_dir():
            skipped.append((name, "not_a_directory"))
        else:
            out.append(version)
    return sorted(out), sorted(skipped)


def list_versions(root: Path, branch: str) -> list[int]:
    """Complete versions of a branch, ascending; anything else is ignored (see scan_versions)."""
    return scan_versions(root, branch)[0]


def list_branches(root: Path) -> list[str]:
    r = Path(root)
    if not r.is_dir():
        return []
    return sorted(c.name for c in r.iterdir() if c.is_dir() and not c.name.startswith("."))


def publish_version(
    root: Path,
    branch: str,
    model_path: Path,
    metadata: dict[str, Any],
) -> tuple[int, Path]:
    """Copy ``model_path`` and its metadata into a new version directory, atomically.

    ``metadata`` is everything of :class:`ModelMetadata` but ``version``,
    ``model_sha256``, ``model_size_bytes`` and ``created_at``, which are filled here.
    Returns (version, directory).
    """
    branch_dir = Path(root) / branch
    with _branch_lock(branch_dir):
        existing = list_versions(root, branch)
        version = (existing[-1] + 1) if existing else 1
        if version > MAX_VERSION:
            raise ValueError(f"branch {branch!r} has reached version {MAX_VERSION}, the contract's largest")
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=branch_dir))
        try:
            dst_model = tmp / MODEL_FILE
            shutil.copyfile(model_path, dst_model)
            with dst_model.open("rb") as f:
                os.fsync(f.fileno())
            meta = dict(metadata)
            meta.update(
                version=version,
                model_sha256=sha256_file(dst_model),
                model_size_bytes=dst_model.stat().st_size,
                created_at=utc_now(),
            )
            validated = ModelMetadata.model_validate(meta)
            with (tmp / METADATA_FILE).open("w") as f:
                f.write(validated.model_dump_json(indent=2))
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(tmp)
            os.chmod(tmp, 0o755)
            final = branch_dir / str(version)
            os.rename(tmp, final)
            fsync_dir(branch_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return version, final


def read_metadata(version_dir: Path, *, root: Path | None = None) -> ModelMetadata:
    """Read and validate a version's metadata.json; refuse paths that escape ``root``."""
    vdir = Path(version_dir)
    if root is not None:
        real_root = Path(root).resolve()
        for p in (vdir, vdir / METADATA_FILE, vdir / MODEL_FILE):
            if not p.resolve().is_relative_to(real_root):
                raise InvalidArgument(f"{p} resolves outside the model repository {real_root}")
    meta_path = vdir / METADATA_FILE
    if meta_path.stat().st_size > MAX_METADATA_BYTES:
        raise InvalidArgument(f"{meta_path} is larger than {MAX_METADATA_BYTES} bytes")
    try:
        data = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"{meta_path} is not valid JSON: {exc}") from exc
    from pydantic import ValidationError

    from trajlab.config import format_validation_error

    try:
        return ModelMetadata.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgument(format_validation_error(exc, str(meta_path))) from None
