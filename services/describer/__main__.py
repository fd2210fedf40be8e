"""``python -m services.describer``: read settings, set up logging, build the router, serve."""

from __future__ import annotations

import logging
import sys

from trajlab.config import load_settings
from trajlab.errors import ConfigError
from trajlab.logging_setup import setup_logging

log = logging.getLogger("services.describer")


def main() -> int:
    from services.describer.settings import DescriberSettings

    try:
        settings = load_settings(DescriberSettings)
    except ConfigError as exc:
        setup_logging("INFO")
        log.error("%s", exc)
        return 2
    setup_logging(settings.log_level, settings.json_logs)

    from grpc_health.v1 import health

    from services.describer.router import BackendRegistry, Router
    from services.describer.servicer import SERVICE_NAME, DescriberServicer
    from trajlab.describer.v1 import describer_pb2_grpc
    from trajlab.grpc_server import create_server, serve_until_signal, start_metrics_server
    from trajlab.profiles import load_branches

    try:
        branches = load_branches(settings.branches_file)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    try:
        defaults = settings.branch_defaults({name: b.describer_backend for name, b in branches.items()})
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    registry = BackendRegistry(settings, defaults)
    checks = [(f"branches: {name}.describer_backend", b) for name, b in registry.branch_defaults.items()]
    for where, backend in [*checks, ("default_backend", settings.default_backend)]:
        try:
            registry.resolve(backend)
        except Exception as exc:
            log.error("%s = %r: %s", where, backend, exc)
            return 2
    router = Router(registry)
    for st in registry.statuses():
        log.info("backend %s: %s (%s)", st.name, st.health, st.detail)

    servicer = DescriberServicer(router)
    hs = health.HealthServicer(experimental_non_blocking=True)
    server, port = create_server(
        f"{settings.host}:{settings.port}",
        registrations=[lambda s: describer_pb2_grpc.add_DescriberServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        health_servicer=hs,
        serving=True,
        max_workers=settings.max_workers,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        max_message_bytes=settings.max_message_bytes,
        tls=settings.tls,
        max_connection_age_seconds=settings.max_connection_age_seconds,
        max_connection_age_grace_seconds=settings.max_connection_age_grace_seconds,
    )
    mport = start_metrics_server(settings.metrics_host, settings.metrics_port)
    log.info("describer serving on %s:%d (metrics port %s)", settings.host, port, mport)
    serve_until_signal(server, grace_seconds=settings.grace_seconds, health_servicer=hs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
