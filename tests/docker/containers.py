"""Testcontainers wrappers: one class per service image, as a user would start it.

Each wrapper starts the image built by ``make images`` (``trajlab/<svc>:cpu``),
publishes its gRPC and metrics ports on 127.0.0.1 only (random host ports), and
waits until the gRPC health service answers SERVING. The stubs are the generated
ones, the same a client uses.

The environment testcontainers needs on these machines is set here, before
testcontainers reads its configuration (see shared ENVIRONMENT.md): no reaper image
can be pulled (the fixtures stop what they start), and the host looks like a
container to testcontainers, which would then talk to the bridge gateway.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TC_HOST", "127.0.0.1")

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from testcontainers.core.container import DockerContainer

METRICS_PORT = 9100  # inside every image


class ServiceContainer(DockerContainer):  # type: ignore[misc]
    """A trajlab service image with its ports on loopback and a gRPC-health wait."""

    service: ClassVar[str]
    grpc_port: ClassVar[int]

    def __init__(self, image: str | None = None, **env: str) -> None:
        super().__init__(image or f"trajlab/{self.service}:cpu")
        # docker-py's ("127.0.0.1",) = loopback, any free host port: nothing listens on the
        # network (with_bind_ports only takes a port number, which would bind 0.0.0.0).
        self.ports[f"{self.grpc_port}/tcp"] = ("127.0.0.1",)
        self.ports[f"{METRICS_PORT}/tcp"] = ("127.0.0.1",)
        for key, value in env.items():
            self.with_env(key, value)
        self._channel: grpc.Channel | None = None

    # --- addresses ---------------------------------------------------------------
    @property
    def target(self) -> str:
        """host:port of the gRPC server as seen from the test."""
        return f"{self.get_container_host_ip()}:{self.get_exposed_port(self.grpc_port)}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.get_container_host_ip()}:{self.get_exposed_port(METRICS_PORT)}/metrics"

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    # --- lifecycle ---------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ServiceContainer:
        super().start()
        try:
            self.wait_serving(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        super().stop(force=force, delete_volume=delete_volume)

    def health(self, timeout: float = 3.0) -> int:
        """The overall gRPC health status (health_pb2.HealthCheckResponse.*)."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout).status

    def wait_serving(self, timeout: float) -> None:
        """Block until health says SERVING; fail with the container's log otherwise."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.reload()
            if self.state() != "running":
                raise AssertionError(f"{self.service} container exited:\n{self.logs_text()}")
            try:
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = "NOT_SERVING"
            except grpc.RpcError as exc:
                last = exc.code().name
            time.sleep(0.5)
        raise AssertionError(f"{self.service} not SERVING after {timeout:.0f} s (last: {last}):\n{self.logs_text()}")

    # --- docker state ----------------------------------------------------------------
    def reload(self) -> None:
        self.get_wrapped_container().reload()

    def state(self) -> str:
        return str(self.get_wrapped_container().attrs["State"]["Status"])

    def docker_health(self) -> str:
        """Docker's own HEALTHCHECK verdict: starting, healthy or unhealthy."""
        self.reload()
        return str(self.get_wrapped_container().attrs["State"].get("Health", {}).get("Status", "none"))

    def logs_text(self) -> str:
        out, err = self.get_logs()
        return (out + err).decode(errors="replace")[-6000:]


class EncoderContainer(ServiceContainer):
    """trajlab/encoder serving a model repository mounted read-only at /models."""

    service = "encoder"
    grpc_port = 50051

    def __init__(self, model_repo: Path, image: str | None = None, **env: str) -> None:
        defaults = {
            "TRAJLAB_ENCODER_POLL_SECONDS": "0.5",
            "TRAJLAB_ENCODER_INTRA_OP_THREADS": "1",
            "TRAJLAB_ENCODER_WARMUP_RUNS": "1",
        }
        super().__init__(image, **{**defaults, **env})
        self.with_volume_mapping(str(model_repo), "/models", "ro")

    def stub(self) -> Any:
        from trajlab.encoder.v1 import encoder_pb2_grpc

        return encoder_pb2_grpc.EncoderServiceStub(self.channel)


class DescriberContainer(ServiceContainer):
    """trajlab/describer; no OpenAI key and no TGI by default (so it falls back, loudly)."""

    service = "describer"
    grpc_port = 50053

    def __init__(self, image: str | None = None, **env: str) -> None:
        super().__init__(image, **{"OPENAI_API_KEY": "", **env})

    def stub(self) -> Any:
        from trajlab.describer.v1 import describer_pb2_grpc

        return describer_pb2_grpc.DescriberServiceStub(self.channel)


class TrainerContainer(ServiceContainer):
    """trajlab/trainer for one branch; data, models and runs in the container unless mounted."""

    service = "trainer"
    grpc_port = 50052

    def __init__(self, branch: str = "b1", image: str | None = None, **env: str) -> None:
        super().__init__(image, **{"TRAJLAB_TRAINER_BRANCH": branch, **env})

    def stub(self) -> Any:
        from trajlab.trainer.v1 import trainer_pb2_grpc

        return trainer_pb2_grpc.TrainerServiceStub(self.channel)


class ReporterContainer(ServiceContainer):
    """trajlab/reporter; sources are given by env (TRAJLAB_REPORTER_*)."""

    service = "reporter"
    grpc_port = 50054

    def stub(self) -> Any:
        from trajlab.reporter.v1 import reporter_pb2_grpc

        return reporter_pb2_grpc.ReporterServiceStub(self.channel)
