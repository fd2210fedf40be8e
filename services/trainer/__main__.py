"""``python -m services.trainer``: read settings, set up logging, serve until SIGTERM."""

from __future__ import annotations

import logging
import sys

from trajlab.errors import ConfigError
from trajlab.logging_setup import setup_logging

log = logging.getLogger("services.trainer")


def main() -> int:
    from services.trainer.settings import TrainerSettings
    from trajlab.config import load_settings

    try:
        settings = load_settings(TrainerSettings)
    except ConfigError as exc:
        setup_logging("ERROR")
        log.error("%s", exc)
        return 2
    setup_logging(settings.log_level, settings.json_logs)
    # torch is imported only now, after logging is set up.
    from services.trainer.server import TrainerServer
    from trajlab.grpc_server import serve_until_signal, start_metrics_server
    from trajlab.store import StoreError

    try:
        server = TrainerServer(settings)
    except (ConfigError, StoreError) as exc:  # a bucket that cannot be used: one clear line
        log.error("%s", exc)
        return 2
    start_metrics_server(settings.metrics_host, settings.metrics_port)
    server.start()
    assert server.server is not None
    # On SIGTERM: health NOT_SERVING, training stops between steps (it resumes from its
    # last checkpoint on the next start), then in-flight RPCs drain.
    serve_until_signal(
        server.server,
        grace_seconds=settings.grace_seconds,
        health_servicer=server.health,
        on_stop=server.controller.close,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
