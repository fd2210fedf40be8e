"""An encoder's initial weights from a local file: the one route (a branch's ``weights:``).

Never fetched: a branch that wants pretrained weights names a file on disk, a
``torch.save``d state dict or a ``.safetensors`` file, of either

- the encoder itself (what ``encoder.state_dict()`` holds: any registered encoder), or
- the library network a standard backbone wraps (``VideoEncoder.library_network()``):
  torchvision's module names for the vendored CNNs, the ``transformers`` model's for the
  transformers, so a checkpoint of that network loads as it is.

A classifier in the file (``fc.*``, ``classifier.*``, ``head.*``) is ignored: the zoo's
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

FIELD = "weights"  # the branch config field that names the file
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


def _problems(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> list[str]:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} in file, {tuple(v.shape)} in {what}"
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    out = []
    if wrong:
        out.append("shapes differ: " + "; ".join(wrong[:_SHOWN]))
    if missing:
        out.append(f"missing from the file: {', '.join(missing[:_SHOWN])}")
    if unexpected:
        out.append(f"not in {what}: {', '.join(unexpected[:_SHOWN])}")
    return out


def load_encoder_weights(encoder: nn.Module, path: str | Path, *, name: str, field: str = FIELD) -> None:
    """Load ``path`` into ``encoder`` or into the library network it wraps, whichever the file is of.

    The file's names decide: it is matched against the encoder's own state dict and, when the
    encoder wraps a library network, against that network's; the closer of the two (most
    names in common) must fit exactly. Every mismatch is a ConfigError naming ``field``.
    """
    path = Path(path)
    state = read_state_dict(path, field=field)
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    targets: list[tuple[nn.Module, str]] = [(encoder, f"encoder {name!r}")]
    wrapped = getattr(encoder, "library_network", lambda: None)()
    if wrapped is not None:
        targets.append((wrapped, f"the network encoder {name!r} wraps"))
    module, what = max(targets, key=lambda t: len(set(t[0].state_dict()) & set(state)))
    problems = _problems(module, state, what)
    if problems:
        raise ConfigError(
            f"{field}: {path} is not a state dict of encoder {name!r} at this size or of the network "
            f"it wraps (check its encoder_args: widths, depth, in_channels): {' | '.join(problems)}"
        )
    module.load_state_dict(state, strict=True)
    log.info("encoder %s: loaded weights from %s into %s (%d tensors)", name, path, what, len(state))
