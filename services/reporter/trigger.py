"""Build one report once every trainer has finished (compose: the reporter waits for the run)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import grpc

from services.reporter.build import ReportSources
from services.reporter.model import ReportResult
from trajlab.trainer.v1 import trainer_pb2

log = logging.getLogger(__name__)

FINISHED = (trainer_pb2.TRAINING_STATE_DONE, trainer_pb2.TRAINING_STATE_FAILED)


def wait_until_trainers_finish(sources: ReportSources, poll_seconds: float, stop: threading.Event) -> bool:
    """Block until every live trainer is DONE or FAILED (an unreachable one is waited for); False if
    stopped. Stored runs are read as they are: a pending one is reported as pending."""
    while not stop.is_set():
        pending = []
        for b, src in sources.trainers.items():
            if not getattr(src, "live", True):
                continue
            try:
                state = src.status().state
            except grpc.RpcError:
                state = None
            if state not in FINISHED:
                pending.append(b)
        if not pending:
            return True
        log.info("report trigger: waiting for trainers %s", ", ".join(pending))
        stop.wait(poll_seconds)
    return False


def wait_for_encoder(sources: ReportSources, timeout_seconds: float, stop: threading.Event) -> None:
    """Wait (bounded) until the encoder lists every DONE branch; the report says what is still missing."""
    if sources.encoder is None:
        return
    want = set()
    for b, src in sources.trainers.items():
        try:
            if src.status().state == trainer_pb2.TRAINING_STATE_DONE:
                want.add(b)
        except grpc.RpcError:
            continue
    deadline = time.monotonic() + timeout_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            served = {m.model.branch for m in sources.encoder.list_models()}
        except grpc.RpcError:
            served = set()
        if want <= served:
            return
        stop.wait(2.0)
    log.warning("report trigger: encoder does not serve %s yet; building anyway", ", ".join(sorted(want)))


def start_build_when_done(
    sources_factory: Callable[[], ReportSources],
    build: Callable[[], ReportResult],
    *,
    poll_seconds: float,
    encoder_wait_seconds: float,
    stop: threading.Event,
) -> threading.Thread:
    """Start a daemon thread that waits for the trainers, then builds one report."""

    def run() -> None:
        sources = sources_factory()
        try:
            if not wait_until_trainers_finish(sources, poll_seconds, stop):
                return
            wait_for_encoder(sources, encoder_wait_seconds, stop)
        finally:
            sources.close()
        if stop.is_set():
            return
        try:
            result = build()
        except Exception:
            log.exception("report trigger: building the report failed")
            return
        log.info(
            "report trigger: report written to %s (winner: %s)", result.report_dir, result.winner or "none"
        )

    t = threading.Thread(target=run, name="report-trigger", daemon=True)
    t.start()
    return t
