"""``python -m services.trainer``: train one branch (or one run of a run matrix) behind gRPC."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

from trajlab.service_main import RunningService, run_service

if TYPE_CHECKING:
    from services.trainer.controller import TrainingController
    from services.trainer.settings import TrainerSettings

log = logging.getLogger("services.trainer")


def build(settings: TrainerSettings) -> RunningService:
    # torch is imported only now, after logging is set up.
    from services.trainer.server import TrainerServer

    server = TrainerServer(settings)
    server.start()
    assert server.server is not None
    exit_when_done = settings.exit_when_done
    running = RunningService(
        server.server,
        server.health,
        # On SIGTERM: health NOT_SERVING, training stops between steps (it resumes from its
        # last checkpoint on the next start), then in-flight RPCs drain.
        on_stop=server.controller.close,
        exit_status=(lambda: exit_code(server.controller.status().state)) if exit_when_done else (lambda: 0),
    )
    if exit_when_done:
        stop_when_finished(server.controller, running.stop_event)
    return running


def stop_when_finished(controller: TrainingController, stop: threading.Event) -> None:
    """A Job's pod: once the run is DONE or FAILED, stop the server the way SIGTERM does."""

    def watch() -> None:
        for _ in controller.watch(1.0):  # ends at DONE or FAILED
            pass
        state = controller.status().state
        if state in ("done", "failed"):  # not when the watch ended because of a shutdown
            log.info("run finished (%s): exiting", state)
            stop.set()

    threading.Thread(target=watch, name="exit-when-done", daemon=True).start()


def exit_code(state: str) -> int:
    """0 when the run is done; EXIT_FAILED_RUN when it failed; EXIT_INTERRUPTED otherwise (resume)."""
    from services.trainer.run_matrix import EXIT_FAILED_RUN, EXIT_INTERRUPTED

    return {"done": 0, "failed": EXIT_FAILED_RUN}.get(state, EXIT_INTERRUPTED)


def main() -> int:
    from services.trainer import seed_group
    from services.trainer.run_matrix import resolve_run
    from services.trainer.settings import TrainerSettings

    # TRAJLAB_TRAINER_SEEDS=N: this process runs N child trainers, one per seed (compose's TRAJLAB_SEEDS).
    status = seed_group.main()
    if status is not None:
        return status
    # With a run matrix (an Indexed Job's pod), the index picks branch, seed and run dir.
    return run_service("trainer", TrainerSettings, build, prepare=resolve_run)


if __name__ == "__main__":
    sys.exit(main())
