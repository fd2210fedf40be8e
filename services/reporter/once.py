"""``python -m services.reporter.once``: build one report and exit (a Kubernetes Job's pod).

The reporter service (``python -m services.reporter``) keeps serving BuildReport; a Job
needs a process that ends. This one reads the same settings (``TRAJLAB_REPORTER_*``),
waits until every trainer it is given answers DONE or FAILED (in the Job, the trainers
are sidecars serving the finished runs from the store) and the encoder serves each DONE
branch (bounded by ``encoder_wait_seconds``), builds the report, logs where it is and
exits 0; 1 when the build fails, 2 on a configuration error.
"""

from __future__ import annotations

import logging
import sys
import threading

from trajlab.errors import ConfigError
from trajlab.logging_setup import setup_logging

log = logging.getLogger("services.reporter.once")


def main() -> int:
    from services.reporter.build import ReportSources, build_report
    from services.reporter.settings import ReporterSettings
    from services.reporter.trigger import wait_for_encoder, wait_until_trainers_finish
    from trajlab.config import load_settings

    try:
        settings = load_settings(ReporterSettings)
    except ConfigError as exc:
        setup_logging("ERROR")
        log.error("%s", exc)
        return 2
    setup_logging(settings.log_level, settings.json_logs)
    if not settings.trainer_targets():
        log.error("trainers: no trainers given (TRAJLAB_REPORTER_TRAINERS='b1=host:port,...')")
        return 2
    stop = threading.Event()
    sources = ReportSources.from_settings(settings)
    try:
        wait_until_trainers_finish(sources, settings.build_when_done_poll_seconds, stop)
        wait_for_encoder(sources, settings.encoder_wait_seconds, stop)
        result = build_report(sources, settings)
    except Exception:
        log.exception("building the report failed")
        return 1
    finally:
        sources.close()
    log.info("report written to %s (winner: %s)", result.report_dir, result.winner or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
