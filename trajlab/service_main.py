"""The one bootstrap of every service's ``python -m services.<name>``.

Read the settings (a bad value: one log line naming the field, exit 2), set up logging,
build the service (a configuration or storage location that cannot be used: one line,
exit 2), expose /metrics, serve until SIGTERM/SIGINT or the service's own stop event, drain,
and return the service's exit status. Heavy imports (torch, onnxruntime) belong in the
service's ``build``, which runs after logging is set up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health

from trajlab.config import load_settings
from trajlab.errors import ConfigError
from trajlab.logging_setup import setup_logging

EXIT_BAD_CONFIG = 2
S = TypeVar("S")


@dataclass
class RunningService:
    """What a service's ``build`` hands back: its started gRPC server and how it stops."""

    server: grpc.Server
    health: health.HealthServicer | None
    on_stop: Callable[[], Any] | None = None  # after health goes NOT_SERVING, before the drain
    after_stop: Callable[[], Any] | None = None  # after the drain (release sessions, ...)
    stop_event: threading.Event = field(default_factory=threading.Event)  # the service's own "stop now"
    exit_status: Callable[[], int] = lambda: 0


def run_service(
    name: str,
    settings_cls: type[S],
    build: Callable[[S], RunningService],
    *,
    prepare: Callable[[S], S] | None = None,
) -> int:
    """Run service ``name`` from its settings class and ``build``; returns the process exit status.

    ``prepare`` may derive settings (e.g. a run matrix picks the branch) and raise ConfigError.
    """
    from trajlab.grpc_server import serve_until_signal, start_metrics_server
    from trajlab.store import StoreError

    log = logging.getLogger(f"services.{name}")
    try:
        settings = load_settings(settings_cls)
        if prepare is not None:
            settings = prepare(settings)
    except ConfigError as exc:
        setup_logging("ERROR")
        log.error("%s", exc)
        return EXIT_BAD_CONFIG
    setup_logging(settings.log_level, settings.json_logs)  # type: ignore[attr-defined]
    # /metrics first: a slow start (a bucket to mirror, models to warm up) is already visible.
    start_metrics_server(settings.metrics_host, settings.metrics_port)  # type: ignore[attr-defined]
    try:
        service = build(settings)
    except (ConfigError, StoreError) as exc:  # e.g. a bucket that cannot be used: one clear line
        log.error("%s", exc)
        return EXIT_BAD_CONFIG
    serve_until_signal(
        service.server,
        grace_seconds=settings.grace_seconds,  # type: ignore[attr-defined]
        health_servicer=service.health,
        on_stop=service.on_stop,
        stop_event=service.stop_event,
    )
    if service.after_stop is not None:
        service.after_stop()
    return service.exit_status()
