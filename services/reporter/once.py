"""``python -m services.reporter.once``: build one report and exit (a Kubernetes Job's pod).

The reporter service (``python -m services.reporter``) keeps serving BuildReport; a Job
needs a process that ends. This one reads the same settings (``TRAJLAB_REPORTER_*``),
waits until every run it is given is DONE or FAILED (live trainers, or finished runs'
stored results under ``runs_dir``: in the Job, the store's run directories) and the encoder
serves each DONE run (bounded by ``encoder_wait_seconds``), builds the report, logs where it is and
exits 0; 1 when the build fails, 2 on a configuration error.
"""

from __future__ import annotations

import logging
import sys
import threading

from trajlab.errors import ConfigError
from trajlab.logging_setup import setup_logging
from trajlab.store import StoreError

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
    if not settings.trainer_targets() and settings.runs_dir is None:
        log.error(
            "trainers: no trainers and no runs_dir given (TRAJLAB_REPORTER_TRAINERS='b1=host:port,...' "
            "or TRAJLAB_REPORTER_RUNS_DIR=<path or s3://bucket/prefix>)"
        )
        return 2
    stop = threading.Event()
    try:
        sources = ReportSources.from_settings(settings)
    except (StoreError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
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
