"""Builds the trainer's gRPC server: settings -> branch, profile, controller, servicer, health."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health

from services.trainer import metrics
from services.trainer.controller import TrainingController, make_run_config_factory
from services.trainer.seeds import run_of
from services.trainer.servicer import SERVICE_NAME, TrainerServicer
from services.trainer.settings import TrainerSettings
from trajlab.errors import ConfigError
from trajlab.grpc_server import create_server, set_serving
from trajlab.profiles import load_branches, load_profile
from trajlab.trainer.v1 import trainer_pb2_grpc

log = logging.getLogger(__name__)


class TrainerServer:
    """One branch's trainer behind gRPC. ``start()`` binds; ``stop()`` drains and stops training."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        from services.trainer.branch import known_parts

        branches = load_branches(settings.branches_file, known=known_parts())
        if settings.branch not in branches:
            raise ConfigError(f"branch: unknown branch {settings.branch!r}; known: {sorted(branches)}")
        profile = load_profile(settings.profile)
        self.branch, profile = run_of(
            branches[settings.branch], profile, ablation=settings.ablate, seed=settings.seed
        )
        self.controller = TrainingController(
            branch=self.branch,
            profile=profile,
            make_run_config=make_run_config_factory(settings, self.branch),
            on_update=metrics.record,
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.server: grpc.Server | None = None
        self.port = 0

    def start(self) -> int:
        servicer = TrainerServicer(
            self.controller, default_watch_interval_seconds=self.settings.watch_interval_seconds
        )
        s = self.settings
        self.server, self.port = create_server(
            f"{s.host}:{s.port}",
            registrations=[lambda srv: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, srv)],
            service_names=[SERVICE_NAME],
            health_servicer=self.health,
            serving=False,
            max_workers=s.max_workers,
            max_concurrent_rpcs=s.max_concurrent_rpcs,
            max_message_bytes=s.max_message_bytes,
            tls=s.tls,
        )
        status = self.controller.status()
        log.info(
            "trainer for branch %s (profile %s) on port %d: %s",
            self.branch.name,
            status.profile,
            self.port,
            status.state,
        )
        # Ready to answer: a done run reports its results, an interrupted one resumes.
        if not self.controller.resume_if_interrupted() and s.auto_start:
            self.controller.start()
        set_serving(self.health, [SERVICE_NAME], True)
        return self.port

    def stop(self, grace_seconds: float | None = None) -> None:
        set_serving(self.health, [SERVICE_NAME], False)
        self.controller.close()
        if self.server is not None:
            self.server.stop(self.settings.grace_seconds if grace_seconds is None else grace_seconds).wait()
