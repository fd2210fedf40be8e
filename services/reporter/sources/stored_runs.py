"""Finished runs' stored results as a report source: no trainer has to be running.

A run-dir base (a path or ``s3://bucket/prefix``, through :mod:`trajlab.store`) holds one
run directory per (branch, seed), ``<base>/<branch>/seed-<seed>`` (``services.trainer.run_matrix``).
A run is read as the trainer left it:

- in a bucket, its results are the unit ``results/`` (``results.json`` then
  ``_COMPLETE.json``, ``services.trainer.rundir``): only a unit with its marker counts, and
  ``results.json`` must match the marker's size and sha256;
- in a local run directory, ``results.json`` (written atomically, only when the run completed);
- either way the results must carry the run's fingerprint (a completed run's results always
  do), and a ``status.json`` written after them that says the run is training again (another
  configuration on the same directory) or failed makes them stale.

A run without usable results is reported as not finished: failed, with the error of its
``status.json``, or pending (its state and epoch, or "no status yet"). Such a run has no
results, so the report's statistics leave it out and name it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from services.reporter.model import Missing
from services.reporter.sources.grpc_sources import TrainerFetch
from trajlab.common.v1 import common_pb2
from trajlab.runs import run_name, split_run_name
from trajlab.store import Store, StoreUrl, is_store_url, open_store
from trajlab.store.base import ObjectMissing, StoreError
from trajlab.store.units import MARKER, UnitCorrupt, read_marker
from trajlab.trainer.v1 import trainer_pb2
from trajlab.trainer_results import history_to_proto, results_to_proto

log = logging.getLogger(__name__)

RESULTS_UNIT = "results"  # services.trainer.rundir.RESULTS_UNIT
MAX_JSON_BYTES = 64 * 1024 * 1024
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_RUN_KEY = re.compile(r"^([^/]+)/seed-(\d+)/(status\.json|results\.json|results/|checkpoints/)")
# status.json fields that map one to one onto trainer.proto's TrainingStatus.
_STATUS_FIELDS = (
    "epoch", "total_epochs", "step", "steps_per_epoch", "train_loss", "val_loss", "val_accuracy",
    "forecast_mae_pct", "clips_per_second", "eta_seconds", "model_version", "profile",
    "resumed_from_epoch", "updated_at", "error",
)  # fmt: skip


@dataclass
class StoredRun:
    """What a run directory says about its run: done (with results), failed or pending."""

    state: str  # "done" | "failed" | "pending"
    detail: str = ""  # the failure's error, or where a pending run is
    status: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def run_key(name: str) -> str:
    """The run directory of a run name under the base: ``b1@s2`` -> ``b1/seed-2``; ``b1`` -> ``b1``."""
    branch, seed = split_run_name(name)
    return f"{branch}/seed-{seed}" if seed is not None else branch


def discover_runs(store: Store) -> list[str]:
    """Run names of every ``<branch>/seed-<seed>`` directory under the store (one listing), sorted."""
    found = set()
    for o in store.list(""):
        m = _RUN_KEY.match(o.key)
        if m:
            found.add((m.group(1), int(m.group(2))))
    return [run_name(b, s) for b, s in sorted(found)]


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StoredRunSource:
    """One run's stored status and results (implements ``run_source.RunSource``)."""

    live = False  # read as it is: a run that never finishes must not hold a report back

    def __init__(self, name: str, store: Store, *, bucket: bool) -> None:
        self.branch = name
        self.key = run_key(name)
        self.store = store
        self.bucket = bucket
        self.target = store.child_url(self.key)

    # -- reading the run directory ---------------------------------------------------------

    def _json(self, key: str, what: str, notes: list[str]) -> dict[str, Any] | None:
        try:
            raw = self.store.get_bytes(f"{self.key}/{key}", max_bytes=MAX_JSON_BYTES)
        except ObjectMissing:
            return None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            notes.append(f"{self.target}/{key} is not valid JSON ({exc}); {what} ignored")
            return None
        if not isinstance(data, dict):
            notes.append(f"{self.target}/{key} is not a JSON object; {what} ignored")
            return None
        return data

    def _bucket_results(self) -> tuple[bytes, str] | None:
        """The verified bytes of ``results/results.json`` and when the unit completed; None if none."""
        unit = f"{self.key}/{RESULTS_UNIT}"
        try:
            marker = read_marker(self.store, unit)
        except ObjectMissing:
            return None
        entry = marker.files.get("results.json")
        if entry is None:
            raise UnitCorrupt(f"{self.store.child_url(unit)}/{MARKER} lists no results.json")
        raw = self.store.get_bytes(f"{unit}/results.json", max_bytes=MAX_JSON_BYTES)
        digest = hashlib.sha256(raw).hexdigest()
        if len(raw) != entry.size or digest != entry.sha256:
            raise UnitCorrupt(
                f"{self.store.child_url(unit)}/results.json does not match its completion marker "
                f"(sha256 {digest[:12]}..., {len(raw)} bytes; expected {entry.sha256[:12]}..., "
                f"{entry.size} bytes)"
            )
        return raw, marker.created_at

    def _local_results(self) -> tuple[bytes, str] | None:
        key = f"{self.key}/results.json"
        try:
            raw = self.store.get_bytes(key, max_bytes=MAX_JSON_BYTES)
        except ObjectMissing:
            return None
        listed = self.store.list(key)
        written = _stamp(int(listed[0].etag) / 1e9) if listed and listed[0].etag.isdigit() else ""
        return raw, written

    def read(self) -> StoredRun:
        """The run's state from its directory; store errors (credentials, bucket) propagate."""
        notes: list[str] = []
        status = self._json("status.json", "status", notes)
        results, written, unusable = None, "", ""
        try:
            found = self._bucket_results() if self.bucket else self._local_results()
        except UnitCorrupt as exc:
            found, unusable = None, f"stored results unusable: {exc}"
        if found is not None:
            raw, written = found
            try:
                results = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                unusable = f"stored results unusable: {self.target} results.json is not valid JSON ({exc})"
            else:
                fp = results.get("fingerprint") if isinstance(results, dict) else None
                if not isinstance(fp, str) or not _FINGERPRINT.match(fp):
                    unusable = (
                        f"stored results unusable: {self.target} results.json has no run fingerprint "
                        "(not the results of a completed run)"
                    )
                    results = None
        state = str((status or {}).get("state", ""))
        updated = str((status or {}).get("updated_at", ""))
        if results is not None and state not in ("", "done") and written and updated > written:
            # The directory was reused after these results (another configuration, or a rerun).
            notes.append(f"{self.target}: results.json of {written} predates its status ({state}, {updated})")
            results = None
        if results is not None:
            return StoredRun("done", status=status, results=results, notes=notes)
        if unusable:
            return StoredRun("failed", unusable, status=status, notes=notes)
        if state == "failed":
            return StoredRun("failed", str(status.get("error", "")) if status else "", status, notes=notes)
        if status is None:
            return StoredRun("pending", "no status yet", notes=notes)
        epoch = f"{status.get('epoch', '?')}/{status.get('total_epochs', '?')}"
        return StoredRun("pending", f"{state or 'unknown'} (epoch {epoch})", status, notes=notes)

    # -- the RunSource contract -------------------------------------------------------------

    def status(self) -> trainer_pb2.TrainingStatus:
        return self._status_proto(self.read())

    def _status_proto(self, run: StoredRun) -> trainer_pb2.TrainingStatus:
        s = run.status or {}
        msg = trainer_pb2.TrainingStatus(branch=common_pb2.Branch(name=self.branch))
        for name in _STATUS_FIELDS:
            value = s.get(name)
            if value is not None:
                try:
                    setattr(msg, name, value)
                except (TypeError, ValueError):
                    continue  # a field of another type is left unset, not guessed
        state = {"done": "done", "failed": "failed"}.get(run.state, str(s.get("state", "unspecified")))
        try:
            msg.state = trainer_pb2.TrainingState.Value(f"TRAINING_STATE_{state.upper()}")
        except ValueError:
            msg.state = trainer_pb2.TRAINING_STATE_UNSPECIFIED
        if run.state == "failed" and not msg.error:
            msg.error = run.detail
        if run.results is not None:
            msg.model_version = int(run.results.get("model_version", msg.model_version) or 0)
            history = run.results.get("history") or []
            msg.epoch = max(msg.epoch, len(history))
            msg.total_epochs = max(msg.total_epochs, msg.epoch)
            last = history[-1] if history and isinstance(history[-1], dict) else {}
            for name in ("train_loss", "val_loss", "val_accuracy", "forecast_mae_pct", "clips_per_second"):
                if run.status is None and isinstance(last.get(name), (int, float)):
                    setattr(msg, name, float(last[name]))  # no status stored: the last epoch's figures
        return msg

    def fetch(self) -> TrainerFetch:
        out = TrainerFetch(history_source=f"stored results.json ({self.target})")
        try:
            run = self.read()
        except StoreError as exc:
            out.reachable = False
            reason = f"stored run at {self.target} unreadable ({exc})"
            out.missing.append(Missing("trainer", reason, self.branch))
            return out
        for note in run.notes:
            log.warning("%s", note)
        out.status = self._status_proto(run)
        if run.state == "failed":
            out.missing.append(
                Missing("results", f"branch failed: {run.detail or 'no error message given'}", self.branch)
            )
            return out
        if run.state == "pending":
            out.missing.append(Missing("results", f"no results yet: run is {run.detail}", self.branch))
            return out
        assert run.results is not None
        try:
            out.results = results_to_proto(run.results)
            out.history = history_to_proto(run.results.get("history") or [])
        except (json_format.ParseError, TypeError, ValueError) as exc:
            out.results, out.history = None, None
            out.missing.append(
                Missing("results", f"stored results unusable: {self.target} results.json: {exc}", self.branch)
            )
        return out


def stored_run_sources(location: Any, names: list[str] | None = None) -> dict[str, StoredRunSource]:
    """Sources of the named runs under a run-dir base, or of every run found there (one listing).

    Raises StoreError when the location cannot be used (credentials, missing bucket or directory).
    """
    bucket = is_store_url(location)
    store = open_store(StoreUrl(str(location)) if bucket else location)
    if not bucket:
        if not Path(location).is_dir():
            raise StoreError(
                f"runs_dir: {location} is not a directory (expected <runs_dir>/<branch>/seed-<seed>/)"
            )
    else:
        store.check()
    wanted = names if names else discover_runs(store)
    return {n: StoredRunSource(n, store, bucket=bucket) for n in wanted}


def stored_views(sources: dict[str, StoredRunSource]) -> list[Any]:
    """The monitor's rows (``monitor.BranchView``) from the runs' stored status, no trainer asked."""
    from services.reporter.monitor import BranchView

    views = []
    for name, src in sources.items():
        try:
            views.append(BranchView(name, src.target, src.status()))
        except StoreError as exc:
            views.append(BranchView(name, src.target, None, f"store unreadable: {exc}"))
    return views
