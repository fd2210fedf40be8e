"""The reporter's locations in a bucket: reports published there, validation data read from there.

With ``reports_dir = s3://bucket/prefix`` a report is rendered into a local directory
(``<cache_dir>/reports/...``, figure paths must be files) and then published as the unit
``<prefix>/<UTC stamp>/`` (every file, then ``_COMPLETE.json`` last), so a reader of the
bucket never sees half a report. With ``data_dir = s3://...`` the validation split is
fetched (verified) into ``<cache_dir>/data/...`` the first time it is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from services.reporter.settings import ReporterSettings
from trajlab.store import StoreUrl, is_store_url, open_store
from trajlab.store.units import publish_unit

log = logging.getLogger(__name__)


def _local_copy(settings: ReporterSettings, kind: str, url: StoreUrl) -> Path:
    return Path(settings.cache_dir) / kind / url.bucket / (url.prefix or "_root")


def local_reports_dir(settings: ReporterSettings) -> Path:
    """Where reports are rendered: reports_dir itself, or a local copy of a bucket's."""
    d = settings.reports_dir
    return _local_copy(settings, "reports", StoreUrl(str(d))) if is_store_url(d) else Path(d)


def publish_report(settings: ReporterSettings, report_dir: Path) -> str | None:
    """Upload a rendered report to the bucket named by reports_dir; its URL, or None when local."""
    if not is_store_url(settings.reports_dir):
        return None
    store = open_store(str(settings.reports_dir))
    files = {
        p.relative_to(report_dir).as_posix(): p
        for p in sorted(Path(report_dir).rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    publish_unit(store, report_dir.name, files, meta={"kind": "report"})
    url = store.child_url(report_dir.name)
    log.info("report published to %s", url)
    return url


def local_validation_dir(settings: ReporterSettings) -> Path:
    """The dataset holding the validation clips, fetched from a bucket data_dir when needed."""
    d = settings.validation_dir()
    if not is_store_url(d):
        return Path(d)
    from trajlab.profiles import load_profile
    from trajlab.store.datasets import prepare_dataset

    url = StoreUrl(str(d))
    return prepare_dataset(load_profile(settings.profile).dataset, _local_copy(settings, "data", url), url)


def check_locations(settings: ReporterSettings) -> None:
    """Raise a StoreError now if a bucket location (reports, data, runs) cannot be used."""
    for location in (settings.reports_dir, settings.data_dir, settings.runs_dir):
        if is_store_url(location):
            open_store(str(location)).check()
