"""A trainer for one training seed of a branch, or of its ablation (see :mod:`trajlab.runs`).

With ``TRAJLAB_TRAINER_SEED`` set, the branch's config is renamed to the run name (so its
run's status, metrics, results and published models carry it) and the profile's
``training.seed`` (weight init and the per-epoch data order) is replaced by the seed. With
``TRAJLAB_TRAINER_ABLATE=perception`` the branch is trained with the object-track perception
off and named ``<branch>-noperc`` (so ``b1-noperc@s0``).
"""

from __future__ import annotations

from trajlab.profiles import BranchConfig, Profile
from trajlab.runs import ablated_branch, run_name


def ablated(branch: BranchConfig, profile: Profile, ablation: str) -> tuple[BranchConfig, Profile]:
    """The branch with ``ablation`` applied (``"perception"``: the branch's ``track`` false, the
    object-track perception off), renamed ``<branch>-noperc`` (trajlab.runs); unchanged for ``""``."""
    if not ablation:
        return branch, profile
    name = ablated_branch(branch.name, ablation)  # raises on an unknown ablation
    return branch.model_copy(update={"name": name, "track": False}), profile


def seeded(branch: BranchConfig, profile: Profile, seed: int | None) -> tuple[BranchConfig, Profile]:
    """The branch and profile of the run at ``seed``; unchanged when ``seed`` is None."""
    if seed is None:
        return branch, profile
    # model_copy does not re-validate: the run name's "@" is outside the branches file's name pattern
    # on purpose, so a branches file can never define a name that collides with a seed run.
    run = branch.model_copy(update={"name": run_name(branch.name, seed)})
    training = profile.training.model_copy(update={"seed": int(seed)})
    return run, profile.model_copy(update={"training": training})


def run_of(
    branch: BranchConfig, profile: Profile, *, ablation: str, seed: int | None
) -> tuple[BranchConfig, Profile]:
    """The branch and profile a trainer with these settings trains (ablation first, then the seed)."""
    return seeded(*ablated(branch, profile, ablation), seed)
