"""Crash-safe checkpoints: atomic writes, newest-good-wins loading, rotation.

A checkpoint is a dict (model arguments, weights, optimiser, scheduler, epoch, RNG
states, history, run fingerprint) saved with ``torch.save`` to a temp file in the
same directory, flushed and fsynced, then renamed over its final name and the
directory fsynced: after ``kill -9`` at any moment the final name holds either
nothing or a complete checkpoint. Loading walks from the newest file down and
skips (with a log line) any that fail to load or validate.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajlab.atomic import TMP_MARK, atomic_open

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-epoch-(\d{5})\.pt$")


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return Path(directory) / f"ckpt-epoch-{epoch:05d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of complete-looking checkpoint files, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``epoch`` atomically; keep the newest ``keep``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(d, epoch)
    with atomic_open(final, "wb") as fh:
        torch.save(state, fh)
    for _epoch, old in list_checkpoints(d)[:-keep]:
        old.unlink(missing_ok=True)
    log.info("checkpoint saved: %s", final)
    return final


def remove_stale_temp_files(directory: Path) -> int:
    """Delete temp files a killed save left behind; returns how many."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    n = 0
    for p in d.glob(f".ckpt-epoch-*{TMP_MARK}*"):
        p.unlink(missing_ok=True)
        n += 1
    if n:
        log.info("removed %d partial checkpoint file(s) left by an interrupted save in %s", n, d)
    return n


def load_latest(
    directory: Path, *, validate: Callable[[dict[str, Any]], str | None] | None = None
) -> dict[str, Any] | None:
    """The newest checkpoint that loads and passes ``validate`` (which returns a reason to refuse)."""
    for epoch, path in reversed(list_checkpoints(directory)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("epoch") != epoch:
                raise ValueError(f"not a trajlab checkpoint of epoch {epoch}")
        except Exception as exc:
            log.warning("skipping corrupt checkpoint %s: %s", path, exc)
            continue
        reason = validate(state) if validate else None
        if reason:
            log.warning("skipping checkpoint %s: %s", path, reason)
            continue
        return state
    return None
