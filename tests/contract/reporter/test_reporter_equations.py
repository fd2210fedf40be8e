"""The report grades equations from the true positions and from the served model's own track.

A fake encoder serves three branches on dataset trajectories: b1's track is the truth within
a hair, b2's is off by a wobble of a fifth of the extent (and says so on some frames with a
confidence of 0), b3's model has no track. The describer is the real one (analytic backend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from grpc_health.v1 import health

from services.describer.router import BackendRegistry, Router
from services.describer.servicer import SERVICE_NAME, DescriberServicer
from services.describer.settings import DescriberSettings
from services.reporter.build import ReportSources, collect
from services.reporter.equation_grading import BLAME_TRACK, grade_sample
from services.reporter.model import ValidationSet
from services.reporter.render.document import Document
from services.reporter.render.equations import equations_section
from services.reporter.render.markdown import render_markdown
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource, TrainerSource
from tests.contract.reporter import kit
from trajlab.codec import clip_to_array
from trajlab.common.v1 import common_pb2
from trajlab.config import load_settings
from trajlab.data.trajectories import TrajectoryGenerator
from trajlab.describer.v1 import describer_pb2_grpc
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.grpc_server import create_server
from trajlab.profiles import CLASS_NAMES

T, HORIZON, FPS, PER_CLASS = 16, 4, 8.0, 2


def _validation() -> ValidationSet:
    gen = TrajectoryGenerator(frames=T, horizon=HORIZON, fps=FPS)
    trajs = [gen.sample(c, np.random.default_rng(10 * c + k)) for c in range(4) for k in range(PER_CLASS)]
    n = len(trajs)
    pos = np.stack([t.positions for t in trajs]).astype(np.float32)
    clips = np.zeros((n, T, 8, 8, 3), dtype=np.uint8)
    clips[:, 0, 0, 0, 0] = np.arange(n)  # the fake encoder reads the clip's index here
    return ValidationSet(
        clips=clips, labels=np.array([t.label for t in trajs], dtype=np.int64), positions=pos,
        times=gen.times.astype(np.float32), extent=np.ptp(pos, axis=1).max(axis=1), fps=FPS,
        class_names=CLASS_NAMES, equations=[t.equations for t in trajs], params=[t.params for t in trajs],
    )


class _TrackEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    def __init__(self, val: ValidationSet) -> None:
        self.val = val

    def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        return encoder_pb2.ListModelsResponse(models=[
            encoder_pb2.ModelInfo(model=common_pb2.ModelRef(branch=b, version=1), is_default=True,
                                  class_names=list(CLASS_NAMES), forecast_horizon=HORIZON, has_track=b != "b3")
            for b in ("b1", "b2", "b3")
        ])

    def Analyze(self, request, context):  # type: ignore[no-untyped-def]
        b = request.model.branch
        i = int(clip_to_array(request.clip)[0, 0, 0, 0])
        truth = self.val.positions[i].astype(np.float64)
        label = int(self.val.labels[i])
        resp = encoder_pb2.AnalyzeResponse(
            model=common_pb2.ModelRef(branch=b, version=1), motion_class=label + 1,
            class_name=CLASS_NAMES[label], probabilities=[float(k == label) for k in range(4)],
            class_names=list(CLASS_NAMES), positions=[_p(p) for p in truth[T:]],
            times=[float(t) for t in self.val.times[T:]], embedding=[0.0] * 4,
        )
        if b == "b3":
            return resp
        track = truth[:T] + 0.001
        conf = np.ones(T)
        if b == "b2":  # a wobble of a fifth of the extent; two frames it says it did not see
            wobble = 0.2 * float(self.val.extent[i]) * np.sin(np.arange(T) * 2.1)
            track = truth[:T] + wobble[:, None] * np.array([1.0, -1.0, 0.5])
            conf[[3, 9]] = 0.0
        resp.observed_track.extend(_p(p) for p in track)
        resp.track_confidence.extend(float(c) for c in conf)
        resp.track_times.extend(float(t) for t in self.val.times[:T])
        return resp


def _p(p: np.ndarray) -> common_pb2.Point3:
    return common_pb2.Point3(x=float(p[0]), y=float(p[1]), z=float(p[2]))


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    val = _validation()
    mp = pytest.MonkeyPatch()
    for var in ("OPENAI_API_KEY", "TRAJLAB_DESCRIBER_OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        mp.delenv(var, raising=False)
    describer = DescriberServicer(Router(BackendRegistry(
        load_settings(DescriberSettings, port=0), {b: "analytic" for b in ("b1", "b2", "b3")}
    )))
    dserver, dport = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: describer_pb2_grpc.add_DescriberServiceServicer_to_server(describer, s)],
        service_names=[SERVICE_NAME], health_servicer=health.HealthServicer(),
    )
    encoder = kit.serve(encoder_pb2_grpc.add_EncoderServiceServicer_to_server, _TrackEncoder(val))
    dead = f"127.0.0.1:{kit.free_port()}"  # no trainers: the equations need the encoder and describer only
    sources = ReportSources(
        trainers={b: TrainerSource(b, dead, timeout_seconds=1) for b in ("b1", "b2", "b3")},
        encoder=EncoderSource(encoder.target), describer=DescriberSource(f"127.0.0.1:{dport}"),
        prometheus=None, validation=lambda: val, validation_hint="generated trajectories",
    )
    settings = load_settings(ReporterSettings, reports_dir=Path("unused"), describe_samples=len(val))
    try:
        yield collect(sources, settings)
    finally:
        encoder.server.stop(0)
        dserver.stop(0)
        mp.undo()


def test_pixels_to_equation_is_graded_beside_the_true_positions(data) -> None:  # type: ignore[no-untyped-def]
    b1, b2, b3 = (data.branches[b] for b in ("b1", "b2", "b3"))
    assert len(b1.samples) == len(b1.track_samples) == len(data.validation) and not b3.track_samples
    truth = [grade_sample(s, data.validation) for s in b1.samples]
    pixels = [grade_sample(s, data.validation) for s in b1.track_samples]
    # The analytic describer on the true positions and on a near-perfect track: every family right,
    # the physical parameters close, the equations within a few % of extent on the observed frames.
    for g in truth + pixels:
        assert g is not None and g.family_right and g.right, g
        assert all(v < 0.05 or (k in ("direction", "normal") and v < 3.0) for k, v in g.parameter_errors.items()), g
    # The frames b2 gave a confidence of 0 were not given to the describer.
    kept = b2.track_samples[0].track_kept
    assert kept is not None and not kept[3] and not kept[9] and kept.sum() == T - 2


def test_the_report_shows_both_grades_and_blames_the_track_where_it_fails(data) -> None:  # type: ignore[no-untyped-def]
    section = equations_section(data)
    md = render_markdown(Document("t", [section]))
    assert "pixels to equation" in md and "true positions" in md
    assert "No pixels-to-equation grade for b3" in md
    table = section.blocks[-2]  # the blame table, then b3's sentence
    rows = {r[0]: r for r in table.rows}
    headers = table.headers
    b1, b2 = rows["b1"], rows["b2"]
    n = len(data.validation)
    assert b1[headers.index("right")] == str(n)  # b1's near-perfect track: nothing to blame
    # b2's wobbling track: the describer is right on the true positions, so its failures are the track's.
    failures = n - int(b2[headers.index("right")])
    assert failures >= n // 2
    assert b2[headers.index(BLAME_TRACK)] == str(failures)


def test_without_a_describer_the_section_says_what_is_missing() -> None:
    """No describer: the section says what is missing instead of grading anything."""
    from services.reporter.model import Missing, ReportData
    from services.reporter.winner import decide

    data = ReportData(
        created_at="2026-01-01T00:00:00Z", branches={}, class_names=CLASS_NAMES, winner=decide([], "accuracy_then_mae"),
        missing=[Missing("equations", "describer at x unreachable (UNAVAILABLE: down)")], sources={},
        validation=_validation(),
    )
    md = render_markdown(Document("t", [equations_section(data)]))
    assert "missing: describer at x unreachable" in md
