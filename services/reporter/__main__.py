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
import sys
import threading
from typing import TYPE_CHECKING

from trajlab.service_main import RunningService, run_service

if TYPE_CHECKING:
    from services.reporter.settings import ReporterSettings

SERVICE_NAME = "trajlab.reporter.v1.ReporterService"
log = logging.getLogger("services.reporter")


def build(settings: ReporterSettings) -> RunningService:
    from grpc_health.v1 import health

    from services.reporter.build import ReportSources
    from services.reporter.servicer import ReporterServicer
    from services.reporter.storage import check_locations
    from services.reporter.trigger import start_build_when_done
    from trajlab.grpc_server import create_server
    from trajlab.reporter.v1 import reporter_pb2_grpc

    check_locations(settings)  # a bucket reports_dir/data_dir that cannot be used: StoreError, exit 2
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
    log.info(
        "reporter on port %d: trainers=%s encoder=%s describer=%s prometheus=%s reports_dir=%s",
        port,
        settings.trainers or "(none)",
        settings.encoder_target or "(none)",
        settings.describer_target or "(none)",
        settings.prometheus_url or "(none)",
        settings.reports_dir,
    )
    trigger_stop = threading.Event()
    if settings.build_when_done:
        start_build_when_done(
            lambda: ReportSources.from_settings(settings),
            servicer.build,
            poll_seconds=settings.build_when_done_poll_seconds,
            encoder_wait_seconds=settings.encoder_wait_seconds,
            stop=trigger_stop,
        )
    return RunningService(server, hs, on_stop=trigger_stop.set)


def main() -> int:
    from services.reporter.settings import ReporterSettings

    return run_service("reporter", ReporterSettings, build)


if __name__ == "__main__":
    sys.exit(main())
