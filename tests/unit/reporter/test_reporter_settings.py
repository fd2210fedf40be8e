"""Reporter settings: targets and rules are validated at start, naming the field."""

from __future__ import annotations

import pytest

from services.reporter.settings import ReporterSettings, parse_targets
from trajlab.config import load_settings
from trajlab.errors import ConfigError


def test_targets_parse_in_order() -> None:
    assert parse_targets("b2=h:1, b1=h:2") == {"b2": "h:1", "b1": "h:2"}
    assert parse_targets("") == {}


@pytest.mark.parametrize("bad", ["b1", "b1=", "=h:1", "b1=h:1,b1=h:2", "b1=hostonly"])
def test_bad_targets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_targets(bad)


def test_bad_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_REPORTER_WINNER_RULE", "fastest")
    with pytest.raises(ConfigError, match="winner_rule"):
        load_settings(ReporterSettings)
    monkeypatch.delenv("TRAJLAB_REPORTER_WINNER_RULE")
    monkeypatch.setenv("TRAJLAB_REPORTER_TRAINERS", "b1:50052")
    with pytest.raises(ConfigError, match="trainers"):
        load_settings(ReporterSettings)


def test_defaults() -> None:
    s = load_settings(ReporterSettings)
    assert s.port == 50054
    assert str(s.validation_dir()) == "data/quick"


@pytest.mark.parametrize(("field", "value"), [("stats_alpha", 0.0), ("stats_alpha", 1.5), ("stats_power", 1.0)])
def test_statistics_settings_are_checked_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        load_settings(ReporterSettings, **{field: value})


def test_the_report_scores_the_held_out_test_split_by_default() -> None:
    s = load_settings(ReporterSettings)
    assert s.eval_split == "test" and s.stats_alpha == 0.05
    with pytest.raises(ConfigError, match="eval_split"):
        load_settings(ReporterSettings, eval_split="train")  # never the split the models learned from
