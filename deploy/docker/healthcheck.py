"""Container HEALTHCHECK: ask the service's gRPC health endpoint (grpc.health.v1).

Exit 0 when the server answers SERVING, 1 otherwise (NOT_SERVING, no answer within
the deadline, connection refused). The port comes from the service's own settings
variable (TRAJLAB_<SVC>_PORT), so a port changed in compose needs no image change:

    python /app/deploy/healthcheck.py encoder
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORTS = {"encoder": 50051, "trainer": 50052, "describer": 50053, "reporter": 50054}
TIMEOUT_S = 3.0  # seconds; below compose's healthcheck timeout


def main(argv: list[str]) -> int:
    svc = argv[1] if len(argv) > 1 else os.environ.get("TRAJLAB_SERVICE", "")
    if svc not in DEFAULT_PORTS:
        sys.stderr.write(f"usage: healthcheck.py {{{'|'.join(DEFAULT_PORTS)}}}\n")
        return 2
    port = int(os.environ.get(f"TRAJLAB_{svc.upper()}_PORT", DEFAULT_PORTS[svc]))
    target = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(target) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
    except grpc.RpcError as exc:
        sys.stdout.write(f"{svc} at {target}: {exc.code().name}\n")
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    sys.stdout.write(f"{svc} at {target}: {status}\n")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
