"""``python -m services.trainer``: read settings, set up logging, serve until SIGTERM."""

from __future__ import annotations

import logging
import sys
import threading

from trajlab.errors import ConfigError
from trajlab.logging_setup import setup_logging

log = logging.getLogger("services.trainer")


def main() -> int:
    from services.trainer.run_matrix import resolve_run
    from services.trainer.settings import TrainerSettings
    from trajlab.config import load_settings

    try:
        # With a run matrix (an Indexed Job's pod), the index picks branch, seed and run dir.
        settings = resolve_run(load_settings(TrainerSettings))
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
    stop = threading.Event()
    if settings.exit_when_done:
        stop_when_finished(server.controller, stop)
    # On SIGTERM: health NOT_SERVING, training stops between steps (it resumes from its
    # last checkpoint on the next start), then in-flight RPCs drain.
    serve_until_signal(
        server.server,
        grace_seconds=settings.grace_seconds,
        health_servicer=server.health,
        on_stop=server.controller.close,
        stop_event=stop,
    )
    return exit_code(server.controller.status().state) if settings.exit_when_done else 0


def stop_when_finished(controller: object, stop: threading.Event) -> None:
    """A Job's pod: once the run is DONE or FAILED, stop the server the way SIGTERM does."""

    def watch() -> None:
        for _ in controller.watch(1.0):  # type: ignore[attr-defined]  # ends at DONE or FAILED
            pass
        state = controller.status().state  # type: ignore[attr-defined]
        if state in ("done", "failed"):  # not when the watch ended because of a shutdown
            log.info("run finished (%s): exiting", state)
            stop.set()

    threading.Thread(target=watch, name="exit-when-done", daemon=True).start()


def exit_code(state: str) -> int:
    """0 when the run is done; EXIT_FAILED_RUN when it failed; EXIT_INTERRUPTED otherwise (resume)."""
    from services.trainer.run_matrix import EXIT_FAILED_RUN, EXIT_INTERRUPTED

    return {"done": 0, "failed": EXIT_FAILED_RUN}.get(state, EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
