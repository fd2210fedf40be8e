"""``python -m services.encoder``: read settings, set up logging, serve until SIGTERM."""

from __future__ import annotations

import logging
import sys

from trajlab.errors import ConfigError
from trajlab.logging_setup import setup_logging

log = logging.getLogger("services.encoder")


def main() -> int:
    from services.encoder.settings import EncoderSettings
    from trajlab.config import load_settings

    try:
        settings = load_settings(EncoderSettings)
    except ConfigError as exc:
        setup_logging("ERROR")
        log.error("%s", exc)
        return 2
    setup_logging(settings.log_level, settings.json_logs)
    # onnxruntime is imported only now, after logging is set up.
    from services.encoder.server import EncoderServer
    from trajlab.grpc_server import serve_until_signal, start_metrics_server
    from trajlab.store import StoreError

    try:
        server = EncoderServer(settings)
        server.start()
    except StoreError as exc:  # the model repository's bucket cannot be used: say why, once
        log.error("%s", exc)
        return 2
    start_metrics_server(settings.metrics_host, settings.metrics_port)
    assert server.server is not None
    serve_until_signal(
        server.server,
        grace_seconds=settings.grace_seconds,
        health_servicer=server.health,
        on_stop=server.store.stop,
    )
    # In-flight calls have finished (or the grace period ran out): release the sessions.
    server.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
