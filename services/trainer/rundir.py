"""A trainer's run directory in a bucket: checkpoints and results mirrored as units.

Training always reads and writes a LOCAL run directory (``checkpoint.py`` keeps its
atomic temp-file + rename saves). When ``run_dir`` is ``s3://bucket/prefix`` the local
one is a cache (``<cache_dir>/runs/<branch>``) and :class:`RunStore`:

- ``pull()`` at start (before the Trainer is built): every complete checkpoint unit
  (``checkpoints/<fingerprint>/epoch-NNNNN/``) and the results unit are fetched,
  verified against their markers, into the local run directory; a pod rescheduled
  on another node resumes from the newest complete checkpoint as if it had stayed;
- ``saved(path)`` after each local save: the checkpoint (or results.json) is uploaded
  as a unit, marker last, so a trainer killed mid-upload leaves an incomplete unit that
  no reader uses; older checkpoint units beyond ``keep`` are deleted (marker first);
- ``saved(status.json)``: the status is uploaded as one object (an S3 PUT replaces it whole),
  at most once per status interval, and always when the run ends (done, failed, stopped), so
  the reporter and ``trajlab monitor --runs-dir s3://...`` see cluster runs without the pods.
  A failed status upload is logged, never stops the training.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trajlab.profiles import Profile
from trajlab.store import Store, StoreError, StoreUrl, is_store_url, open_store
from trajlab.store.units import UnitCorrupt, complete_units, delete_unit, fetch_unit, publish_unit

log = logging.getLogger(__name__)

_CKPT = re.compile(r"^ckpt-epoch-(\d{5})\.pt$")
_UNIT = re.compile(r"^checkpoints/([0-9a-f]{1,64})/epoch-(\d{5})$")
RESULTS_UNIT = "results"
RESULTS_FILES = ("results.json",)
STATUS_FILE = "status.json"
FINAL_STATES = ("done", "failed", "idle")  # uploaded at once: the run ended or was stopped


class RunStore:
    """Mirrors a local run directory's checkpoints and results to a store (a bucket prefix)."""

    def __init__(self, store: Store, local: Path, *, keep: int, status_interval_seconds: float = 0.0) -> None:
        self.store = store
        self.local = Path(local)
        self.keep = max(1, keep)
        self.status_interval = status_interval_seconds
        self._last_status_put: float | None = None

    @classmethod
    def at(
        cls, url: StoreUrl | str, local: Path, *, keep: int, status_interval_seconds: float = 0.0
    ) -> RunStore:
        return cls(open_store(str(url)), local, keep=keep, status_interval_seconds=status_interval_seconds)

    # -- start: bucket -> local ------------------------------------------------------------

    def pull(self) -> int:
        """Fetch the complete checkpoints and results missing locally; returns how many units."""
        self.store.check()
        units = complete_units(self.store.list(""))
        fetched = 0
        for unit in units:
            m = _UNIT.match(unit)
            if m:
                name = f"ckpt-epoch-{m.group(2)}.pt"
                fetched += self._fetch_file(unit, name, self.local / "checkpoints" / m.group(1) / name)
            elif unit == RESULTS_UNIT:
                fetched += self._fetch_file(unit, "results.json", self.local / "results.json")
        if fetched:
            log.info("fetched %d checkpoint/results unit(s) from %s", fetched, self.store.url)
        return fetched

    def _fetch_file(self, unit: str, name: str, dst: Path) -> int:
        if dst.exists():
            return 0
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-pull-", dir=dst.parent))
        try:
            fetch_unit(self.store, unit, tmp / "unit")
            (tmp / "unit" / name).replace(dst)  # same directory: an atomic rename
        except UnitCorrupt as exc:
            log.warning("skipping %s: %s", self.store.child_url(unit), exc)
            return 0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 1

    # -- after each local save: local -> bucket --------------------------------------------

    def saved(self, path: Path) -> None:
        """Upload a file the trainer has just saved in the local run directory."""
        rel = Path(path).resolve().relative_to(self.local.resolve())
        m = _CKPT.match(rel.name)
        if m and len(rel.parts) == 3 and rel.parts[0] == "checkpoints":
            fingerprint, epoch = rel.parts[1], int(m.group(1))
            publish_unit(self.store, f"checkpoints/{fingerprint}/epoch-{epoch:05d}", {rel.name: Path(path)})
            self._rotate(fingerprint)
        elif rel.as_posix() in RESULTS_FILES:
            publish_unit(self.store, RESULTS_UNIT, {rel.name: Path(path)})
        elif rel.as_posix() == STATUS_FILE:
            self._status_saved(Path(path))

    def _status_saved(self, path: Path) -> None:
        """Upload status.json, rate-limited to one PUT per status interval except when the run ends."""
        now = time.monotonic()
        try:
            state = json.loads(path.read_text()).get("state", "")
        except (OSError, ValueError, AttributeError):
            return  # not a status this code wrote; the next one will be
        last = self._last_status_put
        if state not in FINAL_STATES and last is not None and now - last < self.status_interval:
            return
        self._last_status_put = now
        try:
            self.store.put_file(STATUS_FILE, path)
        except (StoreError, OSError) as exc:
            log.warning("status not uploaded to %s: %s", self.store.child_url(STATUS_FILE), exc)

    def _rotate(self, fingerprint: str) -> None:
        """Keep the newest ``keep`` complete checkpoints; drop older ones and older partial uploads."""
        prefix = f"checkpoints/{fingerprint}/"
        listing = self.store.list(prefix)
        complete = sorted(complete_units(listing))
        kept = set(complete[-self.keep :])
        newest = complete[-1] if complete else ""
        files: dict[str, list[str]] = {}
        for o in listing:
            unit, _, name = o.key.rpartition("/")
            files.setdefault(unit, []).append(name)
        for unit, names in sorted(files.items()):
            if unit not in kept and unit < newest:
                delete_unit(self.store, unit, names)


@dataclass(frozen=True)
class RunPaths:
    """Where a run works locally, and what mirrors it to a bucket (None for local paths)."""

    run_dir: Path
    data_dir: Path
    data_source: StoreUrl | None  # the dataset's bucket location, fetched into data_dir
    on_saved: Callable[[Path], None] | None  # uploads each saved checkpoint/results file


def _local_copy(cache: Path, kind: str, url: StoreUrl) -> Path:
    return Path(cache) / kind / url.bucket / (url.prefix or "_root")


def resolve_run_paths(run: Path | str, data: Path | str, *, cache_dir: Path, profile: Profile) -> RunPaths:
    """Local run and data directories for these locations; a bucket run directory is pulled first."""
    on_saved: Callable[[Path], None] | None = None
    if is_store_url(run):
        url = StoreUrl(str(run))
        run_dir = _local_copy(cache_dir, "runs", url)
        run_store = RunStore.at(
            url,
            run_dir,
            keep=profile.training.keep_checkpoints,
            status_interval_seconds=profile.training.status_interval_seconds,
        )
        run_store.pull()
        on_saved = run_store.saved
    else:
        run_dir = Path(run)
    if is_store_url(data):
        data_url: StoreUrl | None = StoreUrl(str(data))
        data_dir = _local_copy(cache_dir, "data", StoreUrl(str(data)))
    else:
        data_url, data_dir = None, Path(data)
    return RunPaths(run_dir, data_dir, data_url, on_saved)
