"""What a training run writes and how it ends: atomic JSON files, UTC stamps, the two outcomes."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


class TrainingFailed(RuntimeError):
    """The run stopped with an error (NaN loss, failed parity check, ...); no model was published."""


class TrainingStopped(RuntimeError):
    """The run was asked to stop (service shutdown); it resumes from its last checkpoint."""


def utc_stamp(compact: bool = False) -> str:
    fmt = "%Y%m%dT%H%M%SZ" if compact else "%Y-%m-%dT%H:%M:%SZ"
    return time.strftime(fmt, time.gmtime())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside ``path``, fsync, rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
