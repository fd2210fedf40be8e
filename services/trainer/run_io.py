"""What a training run writes and how it ends: atomic JSON files, UTC stamps, the two outcomes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from trajlab.atomic import atomic_open


class TrainingFailed(RuntimeError):
    """The run stopped with an error (NaN loss, failed parity check, ...); no model was published."""


class TrainingStopped(RuntimeError):
    """The run was asked to stop (service shutdown); it resumes from its last checkpoint."""


def utc_stamp(compact: bool = False) -> str:
    fmt = "%Y%m%dT%H%M%SZ" if compact else "%Y-%m-%dT%H:%M:%SZ"
    return time.strftime(fmt, time.gmtime())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically and durably (trajlab.atomic): readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
