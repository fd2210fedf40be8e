"""The Pareto front on textbook cases: dominance, ties, one point, bad input."""

from __future__ import annotations

import math

import pytest

from services.reporter.pareto import pareto_front


def test_textbook_front() -> None:
    # (accuracy, latency): a is fast and poor, b balanced, c accurate and slow, d worse than b on both.
    acc = [0.70, 0.85, 0.95, 0.80]
    lat = [1.0, 2.0, 5.0, 3.0]
    assert pareto_front(acc, lat) == [True, True, True, False]


def test_one_point_dominates_all() -> None:
    assert pareto_front([0.9, 0.8, 0.7], [1.0, 2.0, 3.0]) == [True, False, False]


def test_identical_points_are_both_on_the_front() -> None:
    assert pareto_front([0.9, 0.9, 0.5], [2.0, 2.0, 3.0]) == [True, True, False]


def test_a_tie_on_one_axis_is_decided_by_the_other() -> None:
    # Same accuracy, higher cost: dominated. Same cost, lower accuracy: dominated.
    assert pareto_front([0.9, 0.9], [1.0, 2.0]) == [True, False]
    assert pareto_front([0.9, 0.8], [1.0, 1.0]) == [True, False]


def test_empty_and_single() -> None:
    assert pareto_front([], []) == []
    assert pareto_front([0.1], [100.0]) == [True]


def test_bad_input_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="2 quality values but 1 cost"):
        pareto_front([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="cost value 1 is nan"):
        pareto_front([0.1, 0.2], [1.0, math.nan])
