"""Fixtures: fake trainers, encoder and describer on real gRPC servers bound to 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.reporter.build import ReportSources
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource, TrainerSource
from tests.contract.reporter import kit
from trajlab.config import load_settings


@pytest.fixture(scope="module")
def world() -> Iterator[kit.FakeWorld]:
    w = kit.start_world(kit.default_specs())
    yield w
    w.stop()


@pytest.fixture
def make_sources(world: kit.FakeWorld) -> Callable[..., ReportSources]:
    def make(*, trainers: dict[str, str] | None = None, prometheus=None) -> ReportSources:  # type: ignore[no-untyped-def]
        targets = trainers if trainers is not None else dict(kit.iter_targets(world))
        return ReportSources(
            trainers={b: TrainerSource(b, t, timeout_seconds=5) for b, t in targets.items()},
            encoder=EncoderSource(world.encoder.target) if world.encoder else None,
            describer=DescriberSource(world.describer.target) if world.describer else None,
            prometheus=prometheus,
            validation=lambda: world.val,
            validation_hint="fake split",
        )

    return make


@pytest.fixture
def settings(tmp_path: Path) -> ReporterSettings:
    return load_settings(ReporterSettings, reports_dir=tmp_path / "reports", describe_samples=2)
