"""``python -m services.describer``: build the backend router from the settings and serve it."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from trajlab.errors import ConfigError
from trajlab.service_main import RunningService, run_service

if TYPE_CHECKING:
    from services.describer.settings import DescriberSettings

log = logging.getLogger("services.describer")


def build(settings: DescriberSettings) -> RunningService:
    from grpc_health.v1 import health

    from services.describer.router import BackendRegistry, Router
    from services.describer.servicer import SERVICE_NAME, DescriberServicer
    from trajlab.describer.v1 import describer_pb2_grpc
    from trajlab.grpc_server import create_server

    s = settings
    try:
        defaults = s.branch_defaults(s.file_backends())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    registry = BackendRegistry(s, defaults)
    checks = [(f"branches: {name}.describer_backend", b) for name, b in registry.branch_defaults.items()]
    for where, backend in [*checks, ("default_backend", s.default_backend)]:
        try:
            registry.resolve(backend)
        except Exception as exc:  # every backend a branch names must exist at start, not at first call
            raise ConfigError(f"{where} = {backend!r}: {exc}") from None
    router = Router(registry)
    for st in registry.statuses():
        log.info("backend %s: %s (%s)", st.name, st.health, st.detail)
    servicer = DescriberServicer(router)
    hs = health.HealthServicer(experimental_non_blocking=True)
    server, port = create_server(
        f"{s.host}:{s.port}",
        registrations=[lambda srv: describer_pb2_grpc.add_DescriberServiceServicer_to_server(servicer, srv)],
        service_names=[SERVICE_NAME],
        health_servicer=hs,
        serving=True,
        max_workers=s.max_workers,
        max_concurrent_rpcs=s.max_concurrent_rpcs,
        max_message_bytes=s.max_message_bytes,
        tls=s.tls,
        max_connection_age_seconds=s.max_connection_age_seconds,
        max_connection_age_grace_seconds=s.max_connection_age_grace_seconds,
    )
    log.info("describer serving on %s:%d", s.host, port)
    return RunningService(server, hs)


def main() -> int:
    from services.describer.settings import DescriberSettings

    return run_service("describer", DescriberSettings, build)


if __name__ == "__main__":
    sys.exit(main())
