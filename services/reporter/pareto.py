"""The Pareto front of quality against cost: the points no other point beats on both.

A point is *dominated* when another point is at least as good on both axes (quality no
lower, cost no higher) and strictly better on one. The front is every point that is not
dominated. Identical points do not dominate each other, so a tie on both axes keeps both
on the front; a point equal on one axis and worse on the other is off it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(quality: Sequence[float], cost: Sequence[float]) -> list[bool]:
    """For each point (higher quality is better, lower cost is better): is it on the front?"""
    if len(quality) != len(cost):
        raise ValueError(f"pareto_front: {len(quality)} quality values but {len(cost)} cost values")
    for name, values in (("quality", quality), ("cost", cost)):
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise ValueError(
                f"pareto_front: {name} value {bad[0]} is {values[bad[0]]}, expected a finite number"
            )
    n = len(quality)
    return [
        not any(
            quality[j] >= quality[i] and cost[j] <= cost[i] and (quality[j] > quality[i] or cost[j] < cost[i])
            for j in range(n)
        )
        for i in range(n)
    ]
