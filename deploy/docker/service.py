"""What makes one service image differ from another, and the image's entrypoint.

One Dockerfile (deploy/docker/Dockerfile) builds every service image from its
``SERVICE`` build argument; everything that differs per service is this table:

- ``port``: its gRPC port (``TRAJLAB_<SVC>_PORT``; the healthcheck's default too);
- ``volumes``: mount points ``/<name>`` owned by the runtime user, each also reachable as
  ``/app/<name>`` so the services' relative defaults (``./data``, ``./models``, ...) land there;
- ``writable``: folders under ``/app`` the runtime user writes (caches);
- ``env``: further ``TRAJLAB_<SVC>_*`` defaults.

Two commands, standard library only (the first runs before any venv exists):

    python3 service.py layout SERVICE   # build time, as root: folders, ownership, links
    python service.py run [ARGS...]     # ENTRYPOINT: exec ``python -m services.$TRAJLAB_SERVICE``

``run`` sets the service's defaults (bind 0.0.0.0, its ports, ``env``) only where the
container's environment does not already name them, then replaces itself with the service
process (same PID, so signals and ``docker kill`` reach the service directly).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

UID = GID = 10001  # the images' non-root user `trajlab` (fixed: volume ownership is predictable)
METRICS_PORT = 9100  # Prometheus /metrics inside every image


@dataclass(frozen=True)
class Service:
    port: int
    volumes: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


SERVICES: dict[str, Service] = {
    # gRPC inference over onnxruntime; reads the model repository the trainers publish.
    "encoder": Service(50051, volumes=("models",), env={"MODEL_REPO": "/models"}),
    # PyTorch training of one branch, ONNX export to the model repository.
    "trainer": Service(50052, volumes=("data", "models", "runs"), writable=("cache",)),
    # Equation fitting and descriptions (analytic | OpenAI | TGI backends): no volume.
    "describer": Service(50053),
    # The comparison report from the trainers, encoder, describer and Prometheus.
    "reporter": Service(50054, volumes=("data", "reports"), env={"REPORTS_DIR": "/reports"}),
}


def service_of(name: str, what: str = "SERVICE") -> Service:
    """The table entry of ``name``; SystemExit naming ``what`` and the known services otherwise."""
    if name not in SERVICES:
        raise SystemExit(f"{what}: expected one of {', '.join(SERVICES)}, got {name!r}")
    return SERVICES[name]


def defaults(name: str) -> dict[str, str]:
    """The environment defaults of service ``name`` inside its image."""
    svc = service_of(name)
    prefix = f"TRAJLAB_{name.upper()}_"
    env = {"HOST": "0.0.0.0", "METRICS_HOST": "0.0.0.0", "PORT": str(svc.port)}
    env.update(METRICS_PORT=str(METRICS_PORT), **svc.env)
    return {prefix + k: v for k, v in env.items()}


def layout(name: str, app: str = "/app") -> None:
    """Create the service's volume mount points and writable folders, owned by the runtime user."""
    svc = service_of(name)
    os.makedirs(app, exist_ok=True)
    for vol in svc.volumes:
        os.makedirs(f"/{vol}", exist_ok=True)
        os.chown(f"/{vol}", UID, GID)
        os.symlink(f"/{vol}", f"{app}/{vol}")
    for folder in svc.writable:
        os.makedirs(f"{app}/{folder}", exist_ok=True)
        os.chown(f"{app}/{folder}", UID, GID)
    volumes, writable = list(svc.volumes) or "none", list(svc.writable) or "none"
    sys.stdout.write(f"{name}: volumes {volumes}, writable {writable}\n")


def run(args: list[str]) -> None:
    """Exec the service named by TRAJLAB_SERVICE with its defaults under the container's environment."""
    name = os.environ.get("TRAJLAB_SERVICE", "")
    service_of(name, "TRAJLAB_SERVICE")
    for key, value in defaults(name).items():
        os.environ.setdefault(key, value)
    os.execv(sys.executable, [sys.executable, "-m", f"services.{name}", *args])


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "layout":
        layout(argv[1])
        return 0
    if argv and argv[0] == "run":
        run(argv[1:])
    sys.stderr.write("usage: service.py layout SERVICE | service.py run [ARGS...]\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
