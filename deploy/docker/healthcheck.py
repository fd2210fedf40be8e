"""Container HEALTHCHECK: ask the service's gRPC health endpoint (grpc.health.v1).

Exit 0 when the server answers SERVING, 1 otherwise (NOT_SERVING, no answer within
the deadline, connection refused). The service is the argument, else the image's
``TRAJLAB_SERVICE``; the port comes from the service's own settings variable
(TRAJLAB_<SVC>_PORT, default: the table in service.py), so a port changed in compose
needs no image change:

    python /app/deploy/healthcheck.py [encoder]
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from service import SERVICES  # deploy/docker/service.py, beside this file in the image

DEFAULT_PORTS = {name: svc.port for name, svc in SERVICES.items()}
TIMEOUT_S = 3.0  # seconds; below compose's healthcheck timeout


def check(svc: str, port: int) -> bool:
    """True when the server on ``port`` answers SERVING; says what it saw on stdout."""
    target = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(target) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
    except grpc.RpcError as exc:
        sys.stdout.write(f"{svc} at {target}: {exc.code().name}\n")
        return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    sys.stdout.write(f"{svc} at {target}: {status}\n")
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    svc = argv[1] if len(argv) > 1 else os.environ.get("TRAJLAB_SERVICE", "")
    if svc not in DEFAULT_PORTS:
        sys.stderr.write(f"usage: healthcheck.py {{{'|'.join(DEFAULT_PORTS)}}}\n")
        return 2
    port = int(os.environ.get(f"TRAJLAB_{svc.upper()}_PORT", DEFAULT_PORTS[svc]))
    # A trainer training a seed group (TRAJLAB_TRAINER_SEEDS=N) serves seed k on port + k: all N must serve.
    group = int(os.environ.get(f"TRAJLAB_{svc.upper()}_SEEDS") or 0) if svc == "trainer" else 0
    return 0 if all([check(svc, port + k) for k in range(max(1, group))]) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
