"""build_report against fake trainers/encoder/describer over real gRPC: what a reader of the report sees."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from services.reporter.build import ReportSources, build_report
from services.reporter.model import ReportResult
from services.reporter.settings import ReporterSettings
from services.reporter.sources.prometheus import PrometheusClient, PrometheusSource
from tests.contract.reporter import kit

SECTIONS = (
    "Summary",
    "Success criteria",
    "Classification",
    "Forecast",
    "Baselines",
    "Per-class figures",
    "Training curves",
    "Served model vs the trainer's evaluation",
    "Cost beside quality",
    "Equations from the describer",
    "Findings",
    "Missing",
    "Method",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(world: kit.FakeWorld, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    from trajlab.config import load_settings

    settings = load_settings(
        ReporterSettings, reports_dir=tmp_path_factory.mktemp("reports"), describe_samples=2
    )
    sources = ReportSources(
        trainers={b: kit_trainer(b, t) for b, t in kit.iter_targets(world)},
        encoder=kit_encoder(world),
        describer=kit_describer(world),
        validation=lambda: world.val,
        validation_hint="fake split",
    )
    return build_report(sources, settings)


def kit_trainer(b: str, t: str):  # type: ignore[no-untyped-def]
    from services.reporter.sources.grpc_sources import TrainerSource

    return TrainerSource(b, t, timeout_seconds=5)


def kit_encoder(world: kit.FakeWorld):  # type: ignore[no-untyped-def]
    from services.reporter.sources.grpc_sources import EncoderSource

    return EncoderSource(world.encoder.target)


def kit_describer(world: kit.FakeWorld):  # type: ignore[no-untyped-def]
    from services.reporter.sources.grpc_sources import DescriberSource

    return DescriberSource(world.describer.target)


def _row(md: str, first_cell: str, after_heading: str) -> list[str]:
    """The cells of the first table row starting with ``first_cell`` after a heading."""
    part = md.split(after_heading, 1)[1] if after_heading else md
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].strip("*") == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} after {after_heading!r}")


def test_every_section_is_present(built: ReportResult) -> None:
    md = built.markdown_path.read_text()
    html = built.html_path.read_text()
    for title in SECTIONS:
        assert f"## {title}" in md, title
        assert title.replace("'", "&#39;") in html or title in html, title


def test_numbers_in_the_markdown_equal_the_trainers_results(
    world: kit.FakeWorld, built: ReportResult
) -> None:
    md = built.markdown_path.read_text()
    for spec in world.specs:
        if spec.state != kit.trainer_pb2.TRAINING_STATE_DONE:
            continue
        r = kit.results_for(spec, world.val)
        cls = _row(md, spec.name, "## Classification")
        assert cls[1] == f"{r.accuracy * 100:.2f} %"
        assert cls[2] == f"{r.mean_class_accuracy * 100:.2f} %"
        fc = _row(md, spec.name, "## Forecast")
        assert fc[1:7] == [
            f"{r.forecast_mae:.4f}",
            f"{r.forecast_rmse:.4f}",
            f"{r.forecast_mae_pct:.2f} %",
            f"{r.forecast_rmse_pct:.2f} %",
            f"{r.ade:.4f}",
            f"{r.fde:.4f}",
        ]
        # Served through the (fake) encoder: the same predictions, so the same accuracy.
        served = _row(md, spec.name, "## Served model vs the trainer's evaluation")
        assert served[3] == served[4] == f"{r.accuracy * 100:.2f} %"
        cost = _row(md, spec.name, "## Cost beside quality")
        assert cost[1] == f"{spec.params:,}"
        # The folded cost table keeps the old size and training figures: model.onnx, epochs, clips/s.
        assert cost[2] == f"{spec.size_bytes / 1e6:.2f}" and cost[6] == str(spec.epochs)
        assert cost[7] == f"{sum(40.0 + e for e in range(1, spec.epochs + 1)) / spec.epochs:.1f}"
        # Baselines beside the branch with the difference in points.
        part = md.split("## Baselines", 1)[1].split(f"*{spec.name} against the baselines.*", 1)[1]
        chance = _row(part, "chance", "")
        assert chance[2] == f"{(r.accuracy - 0.25) * 100:+.2f}"


def test_observed_track_error_and_the_baselines_on_the_models_own_track(
    world: kit.FakeWorld, built: ReportResult
) -> None:
    md = built.markdown_path.read_text()
    part = md.split("## Baselines", 1)[1].split("## Per-class figures", 1)[0]
    assert "what perfect perception would give" in part and "the same pixels the model saw" in part
    own = part.split("applied to each branch's own observed track", 1)[1]
    done = [s for s in world.specs if s.state == kit.trainer_pb2.TRAINING_STATE_DONE]
    assert {s.track_pct is None for s in done} == {True, False}  # b3 has no track readout
    for spec in done:
        r = kit.results_for(spec, world.val)
        row = _row(own, spec.name, "")
        fc = _row(md, spec.name, "## Forecast")
        assert row[1] == f"{r.forecast_mae_pct:.2f} %"
        if spec.track_pct is None:  # an older run or the readout off: said so, not guessed
            assert row[2:] == ["n/a"] * 5 and fc[7] == "n/a"
            continue
        pcts = kit.own_track_pcts(spec)
        assert row[2:] == [f"{spec.track_pct:.2f} %", *(f"{pcts[n]:.2f} %" for n in kit.OWN_TRACK_NAMES)]
        assert fc[7] == f"{spec.track_pct:.2f} %"
    with pytest.raises(AssertionError):  # b4 failed: no results, no row
        _row(own, "b4", "")


def test_figures_exist_and_are_valid_pngs(built: ReportResult) -> None:
    names = {p.name for p in built.figure_paths}
    assert {
        "curves_loss.png",
        "curves_accuracy.png",
        "curves_mae.png",
        "bars_accuracy.png",
        "bars_mae.png",
        "confusion_b1.png",
        "trajectories_b1.png",
    } <= names
    for p in built.figure_paths:
        data = p.read_bytes()
        assert data.startswith(PNG_SIGNATURE), p
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.width > 200 and im.height > 150
        assert f"]({p.name})" in built.markdown_path.read_text()


def test_html_is_self_contained(built: ReportResult) -> None:
    html = built.html_path.read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == len(built.figure_paths)
    assert not re.search(r'(src|href)="(http|file|/)', html)


def test_winner_follows_the_rule_with_a_tie_broken_by_mae(built: ReportResult) -> None:
    # b1 and b2 both misclassify 3 of 24 clips; b2's forecast is closer, so b2 wins.
    assert built.winner == "b2"
    md = built.markdown_path.read_text()
    assert "**Leader by the rule: b2.**" in md
    assert "highest validation accuracy" in md and "ties broken by lower forecast MAE" in md
    assert "tie on validation accuracy at 87.50 %" in built.justification
    # The paired tests find the three tied, so the rule's leader leads and no winner is declared.
    assert "b2 leads" in built.justification and "No winner is declared" in built.justification
    assert "wins" not in built.justification


def test_failed_branch_and_fallbacks_are_shown_not_guessed(built: ReportResult) -> None:
    md = built.markdown_path.read_text()
    b4 = _row(md, "b4", "## Summary")
    assert "failed" in b4[4] and b4[5] == "missing"
    assert "branch failed: loss became NaN at epoch 2" in b4[-1]
    missing = {(m.section, m.branch): m.reason for m in built.missing}
    assert missing[("results", "b4")] == "branch failed: loss became NaN at epoch 2"
    # Every describer answer fell back to analytic: counted as fallbacks, not as GPT-4 answers.
    gpt = _row(md, "openai:gpt-4", "## Equations from the describer")
    assert gpt[3] == "analytic" and gpt[4] == "4 of 4" and gpt[6] == "n/a (all fell back)"
    assert "no OPENAI_API_KEY" in gpt[7]


def test_report_json_agrees(built: ReportResult, world: kit.FakeWorld) -> None:
    doc = json.loads(built.json_path.read_text())
    assert doc["winner"]["winner"] == "b2"
    r1 = kit.results_for(world.specs[0], world.val)
    assert doc["branches"]["b1"]["results"]["accuracy"] == pytest.approx(r1.accuracy)
    assert doc["branches"]["b1"]["served"]["accuracy"] == pytest.approx(r1.accuracy)
    assert doc["branches"]["b1"]["curves"]["source"] == "trainer GetHistory"
    track = doc["branches"]["b1"]["results"]["observed_track"]
    assert track["present"] is True and track["observed_mae_pct"] == pytest.approx(2.5)
    assert [b["name"] for b in track["baselines"]] == list(kit.OWN_TRACK_NAMES)
    assert "observed_track" not in doc["branches"]["b3"]["results"]  # no track readout


def test_trainer_down_and_prometheus_unreachable_still_write_the_report(
    world: kit.FakeWorld, make_sources: Callable[..., ReportSources], settings: ReporterSettings
) -> None:
    targets = dict(kit.iter_targets(world))
    dead = f"127.0.0.1:{kit.free_port()}"
    targets["b2"] = dead  # the winner's trainer is down now
    prom = PrometheusSource(PrometheusClient(f"http://127.0.0.1:{kit.free_port()}", timeout_seconds=2))
    result = build_report(make_sources(trainers=targets, prometheus=prom), settings)
    assert result.markdown_path.is_file() and result.html_path.is_file()
    missing = {(m.section, m.branch): m.reason for m in result.missing}
    assert f"trainer at {dead} unreachable" in missing[("trainer", "b2")]
    assert "Prometheus at" in missing[("prometheus", "")] and "unreachable" in missing[("prometheus", "")]
    md = result.markdown_path.read_text()
    b2 = _row(md, "b2", "## Summary")
    assert b2[4] == "unreachable" and b2[5] == "missing"
    assert "unreachable" in _row(md, "prometheus", "## Missing")[2]
    # Without b2's results the rule picks among the rest: b1 (87.5 %) over b3 (75 %).
    assert result.winner == "b1"
    # The encoder still serves b2: its served figure is reported, separately from the trainer's.
    assert _row(md, "b2", "## Served model vs the trainer's evaluation")[4] == "87.50 %"
    # Curves fall back to the trainers' history, and say why.
    curves = _row(md, "b1", "## Training curves")
    assert curves[1] == "trainer GetHistory" and "unreachable" in curves[3]


def test_no_encoder_and_no_describer_are_missing_sections(
    world: kit.FakeWorld, settings: ReporterSettings, tmp_path: Path
) -> None:
    from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource, TrainerSource

    sources = ReportSources(
        trainers={b: TrainerSource(b, t, timeout_seconds=5) for b, t in kit.iter_targets(world)},
        encoder=EncoderSource(f"127.0.0.1:{kit.free_port()}", timeout_seconds=2),
        describer=DescriberSource(f"127.0.0.1:{kit.free_port()}", timeout_seconds=2),
        validation=lambda: world.val,
    )
    result = build_report(sources, settings)
    sections = {m.section: m.reason for m in result.missing if not m.branch}
    assert "encoder at" in sections["served model"] and "unreachable" in sections["served model"]
    assert "describer at" in sections["equations"]
    assert result.winner == "b2"  # the rule uses the trainers' figures, which are all there


class _StubPrometheus(PrometheusSource):
    """A Prometheus that holds only some epochs of b1 and a drifted curve of b3 (no network)."""

    def __init__(self, world: kit.FakeWorld) -> None:
        self.world = world
        self.latency_metric = "trajlab_encoder_inference_seconds"

        class _Client:
            base_url = "http://stub"

            def ready(self) -> None:
                return None

        self.client = _Client()  # type: ignore[assignment]

    def training_curves(self, branch: str):  # type: ignore[no-untyped-def]
        from services.reporter.stages.curves import _history_curves

        spec = next(s for s in self.world.specs if s.name == branch)
        hist = kit.FakeTrainer(spec, self.world.val).history
        curves = _history_curves(hist if branch != "b1" else hist[:2])
        curves.source = "prometheus"
        if branch == "b3":
            curves.series["val_accuracy"] = [v * 1.1 for v in curves.series["val_accuracy"]]
        return curves

    def latency(self, branch: str):  # type: ignore[no-untyped-def]
        from services.reporter.model import Latency

        return Latency(p50_ms=1.5, p99_ms=4.0, requests=24, source="stub")

    def request_count(self, branch: str) -> float | None:
        self.counted = getattr(self, "counted", 0.0) + 1000.0  # scraped at once: the settle wait ends
        return self.counted


def test_partial_or_drifting_prometheus_curves_are_flagged(
    world: kit.FakeWorld, make_sources: Callable[..., ReportSources], settings: ReporterSettings
) -> None:
    result = build_report(make_sources(prometheus=_StubPrometheus(world)), settings)
    doc = json.loads(result.json_path.read_text())
    b1 = doc["branches"]["b1"]["curves"]
    assert b1["source"] == "trainer GetHistory" and "Prometheus sampled 2 of 5 epochs" in b1["note"]
    assert doc["branches"]["b2"]["curves"]["source"] == "prometheus"
    assert any(n.startswith("b3: training curves from Prometheus differ") for n in doc["notes"])
    md = result.markdown_path.read_text()
    assert _row(md, "b2", "## Cost beside quality")[0] == "b2"
    lat = _row(md.split("Serving latency per branch", 1)[1], "b2", "")
    assert lat[1:4] == ["1.50", "4.00", "24"]


def test_a_relative_reports_dir_works_like_make_run_uses_it(
    world: kit.FakeWorld,
    make_sources: Callable[..., ReportSources],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `make run` runs from the repository with reports_dir "reports": figure paths were once joined twice.
    from trajlab.config import load_settings

    monkeypatch.chdir(tmp_path)
    settings = load_settings(ReporterSettings, reports_dir=Path("reports"), describe_samples=1)
    result = build_report(make_sources(trainers=dict(kit.iter_targets(world))), settings)
    assert result.report_dir.is_absolute() and result.report_dir.parent == tmp_path / "reports"
    html = result.html_path.read_text()
    assert html.count("data:image/png;base64,") == len(list(result.report_dir.glob("*.png")))
