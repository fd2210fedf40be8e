"""Weights for the standard backbones: random init by default, a local file when a branch names one.

Never fetched: a branch that wants pretrained weights names a file on disk
(``encoder_args: {weights: /models/r3d_18.pth}``), a ``torch.save``d state dict or a
``.safetensors`` file of the network the encoder wraps (for the vendored networks, the
torchvision module names; for the transformers ones, the ``transformers`` model's). A
classifier in the file (``fc.*``, ``classifier.*``, ``head.*``) is ignored: the zoo's
encoders have none. Anything else that does not fit is refused with the field, the file
and the first parameters that differ.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from trajlab.errors import ConfigError

log = logging.getLogger(__name__)

FIELD = "encoder_args.weights"  # the branch config field that names the file
_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.")
_SHOWN = 5  # how many differing names an error lists


def read_state_dict(path: Path, *, field: str = FIELD) -> dict[str, torch.Tensor]:
    """The tensors stored in ``path``; a missing or unreadable file is a ConfigError naming ``field``."""
    if not path.is_file():
        raise ConfigError(f"{field}: weights file {path} does not exist (weights are never downloaded; "
                          "put the file there or remove the field for random init)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader error means the same thing to the user
        raise ConfigError(f"{field}: cannot read weights file {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{field}: weights file {path} does not hold a state dict (name -> tensor)")
    return state


def load_weights(module: nn.Module, path: str | Path | None, *, encoder: str, field: str = FIELD) -> None:
    """Load ``path`` into ``module`` (no-op for ``None``); every mismatch is a clear ConfigError."""
    if path is None:
        return
    path = Path(path)
    state = read_state_dict(path, field=field)
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} in file, {tuple(v.shape)} in {encoder}"
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    problems = []
    if wrong:
        problems.append("shapes differ: " + "; ".join(wrong[:_SHOWN]))
    if missing:
        problems.append(f"missing from the file: {', '.join(missing[:_SHOWN])}")
    if unexpected:
        problems.append(f"not in {encoder}: {', '.join(unexpected[:_SHOWN])}")
    if problems:
        raise ConfigError(
            f"{field}: weights file {path} does not fit encoder {encoder!r} as configured "
            f"(check its widths, depth and in_channels): {' | '.join(problems)}"
        )
    module.load_state_dict(state, strict=True)
    log.info("encoder %s: loaded weights from %s (%d tensors)", encoder, path, len(state))
