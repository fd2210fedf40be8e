"""The winner rule: ordering, tie-break, exclusions, and a justification that states the numbers."""

from __future__ import annotations

import pytest

from services.reporter.model import BranchReport, Missing
from services.reporter.winner import decide
from trajlab.trainer.v1 import trainer_pb2


def _branch(name: str, acc: float | None, mae: float | None = 10.0, samples: int = 80) -> BranchReport:
    b = BranchReport(name=name, trainer_target="x")
    if acc is not None:
        b.results = trainer_pb2.EvaluationResults(accuracy=acc, forecast_mae_pct=mae, samples=samples)
    else:
        b.missing.append(Missing("results", "branch failed: out of memory", name))
    return b


def test_highest_accuracy_wins_and_paragraph_gives_the_numbers() -> None:
    d = decide([_branch("b1", 0.85), _branch("b2", 0.9125), _branch("b3", 0.70)], "accuracy_then_mae")
    assert d.winner == "b2"
    assert d.ranking == ["b2", "b1", "b3"]
    assert "91.25 %" in d.justification and "85.00 %" in d.justification
    assert "6.25 points" in d.justification
    assert "5 clips out of 80" in d.justification


def test_tie_on_accuracy_is_broken_by_lower_mae() -> None:
    d = decide([_branch("b1", 0.875, 9.0), _branch("b2", 0.875, 4.5)], "accuracy_then_mae")
    assert d.winner == "b2"
    assert "tie" in d.justification and "4.50 %" in d.justification and "9.00 %" in d.justification


def test_mae_rule_prefers_the_lower_error() -> None:
    d = decide([_branch("b1", 0.95, 9.0), _branch("b2", 0.80, 4.5)], "mae_then_accuracy")
    assert d.winner == "b2"


def test_branch_without_results_is_excluded_with_its_reason() -> None:
    d = decide([_branch("b1", None), _branch("b2", 0.5, 30.0)], "accuracy_then_mae")
    assert d.winner == "b2"
    assert d.excluded == {"b1": "branch failed: out of memory"}
    # The winner misses the criteria: the paragraph must say so rather than imply success.
    assert "does not meet the success criteria" in d.justification


def test_no_eligible_branch_means_no_winner() -> None:
    d = decide([_branch("b1", None)], "accuracy_then_mae")
    assert d.winner == "" and d.ranking == []
    assert "no winner" in d.justification.lower()


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown winner rule"):
        decide([], "fastest")


def test_a_leader_the_paired_tests_cannot_separate_leads_and_does_not_win() -> None:
    branches = [_branch("b1", 0.85), _branch("b2", 0.9125), _branch("b3", 0.40, 30.0)]
    tied = decide(branches, "accuracy_then_mae", tied=["b2", "b1"])
    assert tied.ranking[0] == "b2"
    assert tied.justification.startswith("b2 leads with a validation accuracy of 91.25 %")
    assert "No winner is declared: the paired tests find b2 and b1 statistically tied" in tied.justification
    assert "wins" not in tied.justification
    clear = decide(branches, "accuracy_then_mae", tied=[])  # the verdict named b2 the winner
    assert clear.justification.startswith("b2 wins") and "No winner is declared" not in clear.justification
