"""A seed group's plan (services/trainer/seed_group.py) and the reporter's view of it agree.

Compose's TRAJLAB_SEEDS=N reaches each trainer (TRAJLAB_TRAINER_SEEDS) and the reporter
(TRAJLAB_REPORTER_TRAINER_SEEDS); the trainer starts seed k's run on port + k, the reporter
asks port + k for that run. Both sides are computed here from the same settings.
"""

from __future__ import annotations

import pytest

from services.reporter.settings import ReporterSettings
from services.trainer.seed_group import child_envs, metrics_children
from services.trainer.settings import TrainerSettings
from trajlab.config import load_settings
from trajlab.errors import ConfigError
from trajlab.profiles import load_profile
from trajlab.runs import seed_group_targets


def _trainer(**values: object) -> TrainerSettings:
    return load_settings(TrainerSettings, yaml_path=None, **{"branch": "b1", "port": 50052, **values})


def test_each_seed_gets_its_run_name_seed_and_ports() -> None:
    envs = child_envs(_trainer(seeds=3, metrics_port=9100), base_seed=7)
    assert list(envs) == ["b1@s7", "b1@s8", "b1@s9"]
    assert [e["TRAJLAB_TRAINER_SEED"] for e in envs.values()] == ["7", "8", "9"]
    assert [e["TRAJLAB_TRAINER_PORT"] for e in envs.values()] == ["50052", "50053", "50054"]
    # The group serves every seed's metrics on 9100; each child's own /metrics is on loopback above it.
    assert [e["TRAJLAB_TRAINER_METRICS_PORT"] for e in envs.values()] == ["9101", "9102", "9103"]
    assert {e["TRAJLAB_TRAINER_METRICS_HOST"] for e in envs.values()} == {"127.0.0.1"}
    assert {e["TRAJLAB_TRAINER_SEEDS"] for e in envs.values()} == {"0"}  # a child never starts a group
    # Disabled metrics stay disabled for every seed.
    assert {e["TRAJLAB_TRAINER_METRICS_PORT"] for e in child_envs(_trainer(seeds=2, metrics_port=-1), 0).values()} == {"-1"}


def test_the_groups_metrics_name_each_child_by_the_run_it_trains() -> None:
    plain = _trainer(seeds=2, metrics_port=9100)
    assert metrics_children(child_envs(plain, base_seed=4)) == {"b1@s4": 9101, "b1@s5": 9102}
    ablated = _trainer(seeds=2, metrics_port=9100, ablate="perception")
    assert metrics_children(child_envs(ablated, base_seed=0)) == {"b1-noperc@s0": 9101, "b1-noperc@s1": 9102}
    # The group's logs and its children's names agree on the run each child trains.
    assert list(child_envs(ablated, base_seed=0)) == ["b1-noperc@s0", "b1-noperc@s1"]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"seeds": 2, "seed": 3}, "TRAJLAB_TRAINER_SEED"),
        ({"seeds": 2, "run_matrix_file": "matrix.yaml"}, "TRAJLAB_TRAINER_RUN_MATRIX_FILE"),
        ({"seeds": 2, "port": 0}, "fixed port"),
    ],
)
def test_a_group_that_cannot_work_is_refused_naming_the_setting(values: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        child_envs(_trainer(**values), base_seed=0)


def test_seeds_out_of_range_are_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_TRAINER_SEEDS", "17")
    with pytest.raises(ConfigError, match="seeds"):
        load_settings(TrainerSettings, yaml_path=None)


def test_the_reporter_asks_every_seed_where_its_trainer_serves_it() -> None:
    base = load_profile("quick").training.seed
    reporter = load_settings(
        ReporterSettings, yaml_path=None, profile="quick", trainer_seeds=2,
        trainers="b1=trainer-b1:50052,b2=trainer-b2:50052",
    )
    targets = reporter.trainer_targets()
    assert targets == {
        f"b1@s{base}": "trainer-b1:50052", f"b1@s{base + 1}": "trainer-b1:50053",
        f"b2@s{base}": "trainer-b2:50052", f"b2@s{base + 1}": "trainer-b2:50053",
    }
    trainer_side = child_envs(_trainer(seeds=2), base_seed=base)
    assert {run: f"trainer-b1:{env['TRAJLAB_TRAINER_PORT']}" for run, env in trainer_side.items()} == {
        r: t for r, t in targets.items() if r.startswith("b1@")
    }
    # Without seeds, the targets are the branches themselves (one run each).
    plain = load_settings(ReporterSettings, yaml_path=None, trainers="b1=trainer-b1:50052")
    assert plain.trainer_targets() == {"b1": "trainer-b1:50052"}


def test_a_target_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        seed_group_targets("b1", "trainer-b1", [0])


def test_a_group_whose_metrics_port_is_taken_exits_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    import trajlab.logging_setup
    from services.trainer import seed_group

    monkeypatch.setattr(trajlab.logging_setup, "setup_logging", lambda *a: None)  # keep pytest's handlers

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        for k, v in {"SEEDS": "2", "PORT": "50052", "METRICS_HOST": "127.0.0.1",
                     "METRICS_PORT": str(busy.getsockname()[1])}.items():
            monkeypatch.setenv(f"TRAJLAB_TRAINER_{k}", v)
        monkeypatch.setattr(seed_group, "run_group", lambda envs: pytest.fail("children started"))
        assert seed_group.main() == 2  # EXIT_BAD_CONFIG, before any child starts
    assert "metrics_port: cannot serve the seed group's metrics" in caplog.text


def test_an_ablated_name_is_the_branch_itself_when_nothing_is_turned_off() -> None:
    from trajlab.runs import ablated_branch

    assert ablated_branch("b1", "perception") == "b1-noperc"
    assert ablated_branch("b1", "") == "b1"
    with pytest.raises(ValueError, match="unknown ablation 'encoder'"):
        ablated_branch("b1", "encoder")
