"""Pixels to equation, measured: a published model served by a real encoder, its own observed
track described by the real describer (analytic), graded against the true trajectories; also the
served model's accuracy and forecast MAE on the whole split.

    PYTHONPATH=. python bench/bench_pixels_to_equation.py --models models --data data/quick \\
        --branch b1 --samples 80

The report's code path (services.reporter.build.collect, with no trainers) on the dataset's
test split; prints, per way (true positions, pixels to equation), the share of clips whose
family is right, of clips right (family and observed RMS <= 5 % of extent), the median RMS on
the observed and forecast frames (% of extent), the median track error and the blame counts.
Figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import socket
from collections import Counter
from pathlib import Path

import numpy as np
from grpc_health.v1 import health

from services.describer.router import BackendRegistry, Router
from services.describer.servicer import SERVICE_NAME, DescriberServicer
from services.describer.settings import DescriberSettings
from services.encoder.server import EncoderServer
from services.encoder.settings import EncoderSettings
from services.reporter.build import ReportSources, collect
from services.reporter.equation_grading import blame, grade_sample, summarise, track_rms_pct
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource, TrainerSource
from services.reporter.sources.validation import load_validation
from trajlab.config import load_settings
from trajlab.describer.v1 import describer_pb2_grpc
from trajlab.grpc_server import create_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, required=True, help="model repository root")
    ap.add_argument("--data", type=Path, required=True, help="dataset cache dir")
    ap.add_argument("--branch", default="b1")
    ap.add_argument("--split", default="test")
    ap.add_argument("--samples", type=int, default=80, help="clips described (cycling through the classes)")
    args = ap.parse_args()

    val = load_validation(args.data, args.split)
    enc = EncoderServer(load_settings(EncoderSettings, host="127.0.0.1", port=0, metrics_port=-1,
                                      model_repo=args.models, intra_op_threads=1))
    enc.start()
    describer = DescriberServicer(Router(BackendRegistry(load_settings(DescriberSettings, port=0),
                                                         {args.branch: "analytic"})))
    dserver, dport = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: describer_pb2_grpc.add_DescriberServiceServicer_to_server(describer, s)],
        service_names=[SERVICE_NAME], health_servicer=health.HealthServicer(),
    )
    try:
        sources = ReportSources(
            trainers={args.branch: TrainerSource(args.branch, f"127.0.0.1:{_free_port()}", timeout_seconds=1)},
            encoder=EncoderSource(f"127.0.0.1:{enc.port}", timeout_seconds=30),
            describer=DescriberSource(f"127.0.0.1:{dport}"), prometheus=None,
            validation=lambda: val, validation_hint=str(args.data),
        )
        settings = load_settings(ReporterSettings, reports_dir=Path("unused"), describe_samples=args.samples)
        data = collect(sources, settings, branches=[args.branch])
    finally:
        enc.stop(0)
        dserver.stop(0)
    b = data.branches[args.branch]
    print(f"branch {args.branch}, {args.split} split, {len(b.samples)} clips described; missing: "
          f"{[m.reason for m in b.missing if m.section != 'trainer'] or 'none'}")
    if b.served is not None:  # the served model on the whole split: the report's headline figures
        m = b.served.metrics
        print(f"served model on the {args.split} split: accuracy {m.accuracy * 100:.2f} % on {m.samples} clips, "
              f"forecast MAE {m.forecast_mae_pct:.2f} % of extent")
    truth = {s.index: grade_sample(s, val) for s in b.samples}
    pixels = {s.index: grade_sample(s, val) for s in b.track_samples}
    for way, grades in (("true positions", truth), ("pixels to equation", pixels)):
        s = summarise([g for g in grades.values() if g is not None])
        if s is None:
            print(f"{way}: no grades")
            continue
        print(f"{way}: family right {s.family_right_pct:.1f} %, right {s.right_pct:.1f} %, RMS observed "
              f"{s.observed_rms_pct:.2f} % of extent (median), RMS forecast (equation) {s.forecast_rms_pct:.2f} %, "
              f"model forecast {s.model_forecast_rms_pct:.2f} %; parameters {s.parameter_errors}")
    track_err = {}
    for s in b.track_samples:
        if s.track is not None:
            ext = float(np.ptp(np.concatenate([s.observed, s.truth_future]), axis=0).max())
            track_err[s.index] = track_rms_pct(s.track, s.observed, ext)
            conf_kept = int(s.track_kept.sum()) if s.track_kept is not None else len(s.track)
            track_err[s.index] = (track_err[s.index], conf_kept)
    if track_err:
        errs = [e for e, _ in track_err.values()]
        kept = [k for _, k in track_err.values()]
        print(f"track: RMS {np.median(errs):.2f} % of extent (median), frames kept by confidence "
              f"{np.mean(kept):.1f} of {val.frames} (mean)")
        counts = Counter(blame(truth.get(i), pixels.get(i), track_err[i][0]) for i in pixels)
        print("blame:", dict(counts))
        per_class = Counter()
        right = Counter()
        for g in pixels.values():
            if g is not None:
                per_class[g.true_family] += 1
                right[g.true_family] += g.family_right
        print("pixels family right per class:",
              {c: f"{right[c]}/{per_class[c]}" for c in sorted(per_class)})


if __name__ == "__main__":
    main()
