"""The evaluation clips (the served-model scoring and the describer samples use them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.reporter.model import BranchReport, Missing, ValidationSet
from services.reporter.stages.base import StageOutput


@dataclass(kw_only=True)
class ClipsLoaded(StageOutput):
    """The clips, or None with the reason in ``missing``."""

    validation: ValidationSet | None = None


def load_clips(provider: Callable[[], ValidationSet] | None, reports: dict[str, BranchReport]) -> ClipsLoaded:
    """Load the clips; a run trained on another dataset than these clips is a finding."""
    if provider is None:
        return ClipsLoaded(missing=[Missing("validation clips", "no validation clips configured")])
    try:
        validation = provider()
    except Exception as exc:  # any load failure is a reason to show, not a crash
        return ClipsLoaded(
            missing=[
                Missing(
                    "validation clips", f"could not load the evaluation clips: {type(exc).__name__}: {exc}"
                )
            ]
        )
    out = ClipsLoaded(validation=validation)
    for b, r in reports.items():
        res = r.results
        if (
            res is not None
            and res.dataset_manifest_sha256
            and validation.manifest_sha256
            and (res.dataset_manifest_sha256 != validation.manifest_sha256)
        ):
            out.notes.append(
                f"{b}: trained on dataset {res.dataset_manifest_sha256[:12]}, but the reporter's "
                f"validation "
                f"clips come from dataset {validation.manifest_sha256[:12]}"
            )
    return out
