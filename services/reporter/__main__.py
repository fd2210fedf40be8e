"""``python -m services.reporter``: the ReporterService gRPC server (default port 50054).

Settings come from ``TRAJLAB_REPORTER_*`` environment variables or the YAML file in
``TRAJLAB_CONFIG`` (see services/reporter/settings.py), e.g.::

    TRAJLAB_REPORTER_TRAINERS="b1=trainer-b1:50052,b2=trainer-b2:50052"
    TRAJLAB_REPORTER_ENCODER_TARGET=encoder:50051
    TRAJLAB_REPORTER_DESCRIBER_TARGET=describer:50053
    TRAJLAB_REPORTER_PROMETHEUS_URL=http://prometheus:9090
    TRAJLAB_REPORTER_BUILD_WHEN_DONE=true   # compose: one report as soon as every trainer is DONE/FAILED
"""

from __future__ import annotations

import logging
import threading

from trajlab.logging_setup import setup_logging

SERVICE_NAME = "trajlab.reporter.v1.ReporterService"


def main() -> None:
    from grpc_health.v1 import health

    from services.reporter.build import ReportSources
    from services.reporter.servicer import ReporterServicer
    from services.reporter.settings import ReporterSettings
    from services.reporter.trigger import start_build_when_done
    from trajlab.config import load_settings
    from trajlab.grpc_server import create_server, serve_until_signal, start_metrics_server
    from trajlab.reporter.v1 import reporter_pb2_grpc

    settings = load_settings(ReporterSettings)
    setup_logging(settings.log_level, settings.json_logs)
    log = logging.getLogger("services.reporter")
    from services.reporter.storage import check_locations
    from trajlab.store import StoreError

    try:
        check_locations(settings)  # a bucket reports_dir/data_dir that cannot be used: one clear line
    except StoreError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    servicer = ReporterServicer(settings)
    hs = health.HealthServicer(experimental_non_blocking=True)
    server, port = create_server(
        f"{settings.host}:{settings.port}",
        registrations=[lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        health_servicer=hs,
        max_workers=settings.max_workers,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        max_message_bytes=settings.max_message_bytes,
        tls=settings.tls,
    )
    start_metrics_server(settings.metrics_host, settings.metrics_port)
    log.info(
        "reporter on port %d: trainers=%s encoder=%s describer=%s prometheus=%s reports_dir=%s",
        port,
        settings.trainers or "(none)",
        settings.encoder_target or "(none)",
        settings.describer_target or "(none)",
        settings.prometheus_url or "(none)",
        settings.reports_dir,
    )
    stop = threading.Event()
    if settings.build_when_done:
        start_build_when_done(
            lambda: ReportSources.from_settings(settings),
            servicer.build,
            poll_seconds=settings.build_when_done_poll_seconds,
            encoder_wait_seconds=settings.encoder_wait_seconds,
            stop=stop,
        )
    serve_until_signal(server, grace_seconds=settings.grace_seconds, health_servicer=hs, on_stop=stop.set)


if __name__ == "__main__":
    main()
