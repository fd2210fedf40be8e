"""Run names: a branch trained at one training seed is the run ``<branch>@s<seed>`` (``b1@s0``).

The run name keeps seed runs apart everywhere a branch name is used: run directories,
checkpoints, status, the trainer's metrics (its ``branch`` label; ``run``, ``seed`` and
``base_branch`` labels come from ``trajlab run``'s scrape config, a compose seed group's
/metrics or the Kubernetes PodMonitor), the model repository (``models/<profile>/b1@s0/<version>/``)
and the encoder, which serves each run under its name. A plain branch name asked of the
encoder resolves to that branch's default run: the one with the lowest seed (the profile's
own ``training.seed``), see :func:`default_run`.
"""

from __future__ import annotations

from collections.abc import Iterable

SEED_SEPARATOR = "@s"
# Ablations `trajlab run --ablate` knows: name -> suffix of the ablated branch's name. A branch
# trained with the object-track perception off is the branch "<branch>-noperc".
ABLATIONS = {"perception": "-noperc"}


def ablated_branch(branch: str, ablation: str) -> str:
    """``("b1", "perception")`` -> ``"b1-noperc"``; ``("b1", "")`` (no ablation) -> ``"b1"``."""
    if not ablation:
        return branch
    if ablation not in ABLATIONS:
        raise ValueError(f"ablate: unknown ablation {ablation!r}; known: {', '.join(sorted(ABLATIONS))}")
    return branch + ABLATIONS[ablation]


def split_ablation(branch: str) -> tuple[str, str]:
    """``"b1-noperc"`` -> ``("b1", "perception")``; ``"b1"`` -> ``("b1", "")``."""
    for name, suffix in ABLATIONS.items():
        if branch.endswith(suffix) and len(branch) > len(suffix):
            return branch[: -len(suffix)], name
    return branch, ""


def run_name(branch: str, seed: int) -> str:
    """``("b1", 0)`` -> ``"b1@s0"``."""
    return f"{branch}{SEED_SEPARATOR}{int(seed)}"


def split_run_name(name: str) -> tuple[str, int | None]:
    """``"b1@s2"`` -> ``("b1", 2)``; ``"b1"`` -> ``("b1", None)``."""
    base, sep, seed = name.rpartition(SEED_SEPARATOR)
    if sep and base and seed.isdigit():
        return base, int(seed)
    return name, None


def training_seeds(base_seed: int, count: int) -> list[int]:
    """The training seeds of ``count`` runs of a branch: the profile's seed, then the next ones."""
    if count < 1:
        raise ValueError(f"seeds: expected at least 1, got {count}")
    return [base_seed + k for k in range(count)]


def default_run(names: Iterable[str], branch: str) -> str | None:
    """The run a plain ``branch`` resolves to among ``names``: the lowest-seed ``branch@s<seed>``."""
    seeds = [(s, n) for n in names for b, s in [split_run_name(n)] if b == branch and s is not None]
    return min(seeds)[1] if seeds else None


def seed_group_targets(branch: str, target: str, seeds: list[int], port_step: int = 1) -> dict[str, str]:
    """The runs of a seed group (one trainer container training several seeds of ``branch``,
    services/trainer/seed_group.py): seed k's run listens on the group's port + k, reached at
    ``port + k * port_step`` (compose publishes seed k of trainer-bN on the host at 5006N + 10 k).

    ``("b1", "trainer-b1:50052", [0, 1])`` -> ``{"b1@s0": "trainer-b1:50052", "b1@s1": "trainer-b1:50053"}``.
    """
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected a trainer target 'host:port' for {branch}, got {target!r}")
    return {run_name(branch, seed): f"{host}:{int(port) + k * port_step}" for k, seed in enumerate(seeds)}


def expand_seed_groups(targets: dict[str, str], seeds: list[int], port_step: int = 1) -> dict[str, str]:
    """``{branch: group target}`` -> ``{run: target}`` of every seed of every group (seed_group_targets)."""
    groups = [seed_group_targets(b, tgt, seeds, port_step) for b, tgt in targets.items()]
    return {run: t for group in groups for run, t in group.items()}
