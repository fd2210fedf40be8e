"""Where the encoder's models come from: a directory, or a bucket mirrored into a local cache.

A directory is watched as before (``repository.ModelStore``). For ``s3://bucket/prefix``
the :class:`BucketModelStore` runs a :class:`BucketMirror` before each scan:

- cost per poll is bounded: ONE listing of the repository's prefix (paged by 1000
  keys), whatever the number of branches; objects are downloaded only for versions
  not mirrored yet;
- only complete versions count (``_COMPLETE.json`` present, written last by the
  publisher); each file is checked against the marker's sha256 while it is
  downloaded into ``<cache>/<branch>/.tmp-*`` and the directory is renamed into place,
  so the ModelStore sees the same atomic layout as from a local repository;
- a version whose objects do not match its marker is refused (logged, counted as a
  load failure ``checksum``), remembered until its objects change, and the previous
  version keeps serving;
- versions that left the bucket, and versions older than the newest ``keep + 1``
  verified ones, are removed from the cache (the ModelStore then retires them).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from services.encoder import metrics
from services.encoder.repository import ModelStore
from trajlab.modelbucket import complete_versions
from trajlab.store import Store, StoreError
from trajlab.store.base import ObjectMissing
from trajlab.store.units import UnitCorrupt, fetch_unit

log = logging.getLogger(__name__)


class BucketMirror:
    """Keeps ``cache`` equal to the newest complete, verified versions of a bucket repository."""

    def __init__(self, store: Store, cache: Path, keep: int) -> None:
        self.store = store
        self.cache = Path(cache)
        self.keep = keep + 1  # one spare, in case the newest is refused by the ModelStore's checks
        self.refused: dict[tuple[str, int], tuple[tuple[Any, ...], str]] = {}  # (branch, v) -> (objects, why)
        self.lists = 0  # listings made (each poll makes one)

    def sync(self) -> bool:
        """Bring the cache in line with the bucket once; True when the cache changed."""
        listing = self.store.list("")
        self.lists += 1
        versions = complete_versions(listing)
        objects: dict[str, list[tuple[str, int, str]]] = {}
        for o in listing:
            objects.setdefault(o.key.rpartition("/")[0], []).append((o.key, o.size, o.etag))
        changed = False
        wanted: dict[str, set[int]] = {}
        for branch, vs in versions.items():
            keep = wanted.setdefault(branch, set())
            for v in reversed(vs):
                if len(keep) >= self.keep:
                    break
                if (self.cache / branch / str(v)).is_dir():
                    keep.add(v)
                    continue
                ident = tuple(sorted(objects.get(f"{branch}/{v}", [])))
                refused = self.refused.get((branch, v))
                if refused is not None and refused[0] == ident:
                    continue
                if self._fetch(branch, v, ident):
                    keep.add(v)
                    changed = True
        changed |= self._prune(wanted)
        self.refused = {k: r for k, r in self.refused.items() if k[1] in versions.get(k[0], [])}
        return changed

    def _fetch(self, branch: str, version: int, ident: tuple[Any, ...]) -> bool:
        name = f"{branch}/{version}"
        try:
            fetch_unit(self.store, name, self.cache / branch / str(version))
        except UnitCorrupt as exc:
            self.refused[(branch, version)] = (ident, str(exc))
            metrics.LOAD_FAILURES.labels(branch, "checksum").inc()
            log.error(
                "refused model %s v%d from %s: %s; the previous version keeps serving",
                branch,
                version,
                self.store.url,
                exc,
                extra={"branch": branch},
            )
            return False
        except ObjectMissing as exc:  # deleted between the listing and the download; next poll sees
            log.warning("model %s v%d changed while it was fetched (%s); retrying", branch, version, exc)
            return False
        log.info("fetched model %s v%d from %s", branch, version, self.store.url, extra={"branch": branch})
        return True

    def _prune(self, wanted: dict[str, set[int]]) -> bool:
        changed = False
        if not self.cache.is_dir():
            return False
        for bdir in self.cache.iterdir():
            if not bdir.is_dir() or bdir.name.startswith("."):
                continue
            for vdir in bdir.iterdir():
                if vdir.name.startswith(".tmp-") or (
                    vdir.name.isdigit() and int(vdir.name) not in wanted.get(bdir.name, set())
                ):
                    shutil.rmtree(vdir, ignore_errors=True)
                    changed = True
            if bdir.name not in wanted and not any(bdir.iterdir()):
                bdir.rmdir()
                changed = True
        return changed


class BucketModelStore(ModelStore):
    """A ModelStore over a local cache that a BucketMirror fills before every scan."""

    def __init__(self, store: Store, cache: Path, **kwargs: Any) -> None:
        super().__init__(cache, **kwargs)
        self.mirror = BucketMirror(store, cache, kwargs.get("keep_versions", 2))
        self._last_error = ""

    def scan(self) -> bool:
        try:
            self.mirror.sync()
            if self._last_error:
                log.info("model repository %s reachable again", self.mirror.store.url)
            self._last_error = ""
        except StoreError as exc:
            # What is cached keeps serving; say it once per distinct error, not every poll.
            if str(exc) != self._last_error:
                log.error("cannot read the model repository: %s; the loaded models keep serving", exc)
            self._last_error = str(exc)
        return super().scan()

    def failures(self) -> list[tuple[str, int, str, str]]:
        mine = [(b, v, "checksum", why) for (b, v), (_ident, why) in self.mirror.refused.items()]
        return sorted([*super().failures(), *mine])
