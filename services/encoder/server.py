"""Assembles the encoder server: model store + servicer + gRPC server + health.

``EncoderServer(settings).start()`` is what ``__main__`` runs and what the tests
start on port 0. Health is NOT_SERVING until at least one model version is
loaded, and follows the store from then on (NOT_SERVING again if every model
disappears from the repository).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health

from services.encoder.engine import Encoder
from services.encoder.repository import BatchingConfig, ModelStore
from services.encoder.runtime import SessionConfig, cpu_count
from services.encoder.servicer import SERVICE_NAME, EncoderServicer
from services.encoder.settings import EncoderSettings
from trajlab.encoder.v1 import encoder_pb2_grpc
from trajlab.grpc_server import create_server, set_serving
from trajlab.store import Store, is_store_url, open_store

log = logging.getLogger(__name__)


def hybrid_layout(s: EncoderSettings) -> bool:
    """The hybrid layout applies to CPU sessions only: intra-op threads are the CPU's."""
    return s.intra_op_layout == "hybrid" and s.providers[:1] == ["CPUExecutionProvider"]


def runs_at_once(s: EncoderSettings) -> int:
    """Runs in flight at once: with the hybrid layout one per intra-op thread (each beyond the
    first on one thread), else ``inference_concurrency`` (a GPU's setting is kept as given)."""
    if hybrid_layout(s):
        return max(s.inference_concurrency, s.intra_op_threads or cpu_count())
    return s.inference_concurrency


class EncoderServer:
    """The running encoder: ``start()`` returns the bound port, ``stop(grace)`` drains."""

    def __init__(self, settings: EncoderSettings) -> None:
        self.settings = settings
        self.health = health.HealthServicer(experimental_non_blocking=True)
        store_options: dict[str, Any] = dict(
            session_config=SessionConfig(
                providers=tuple(settings.providers),
                intra_op_threads=settings.intra_op_threads or cpu_count(),
                warmup_runs=settings.warmup_runs,
            ),
            batching=BatchingConfig(
                mode=settings.batching,
                max_batch_size=settings.max_batch_size,
                max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
                max_queue_size=settings.max_queue_size,
            ),
            keep_versions=settings.keep_versions,
            inference_concurrency=runs_at_once(settings),
            hybrid_layout=hybrid_layout(settings),
            on_change=self._on_models_changed,
        )
        self.bucket: Store | None = None
        if is_store_url(settings.model_repo):
            # A bucket: mirrored into a local cache before each scan (services.encoder.sources).
            from services.encoder.sources import BucketModelStore

            self.bucket = open_store(settings.model_repo)
            self.store: ModelStore = BucketModelStore(self.bucket, settings.model_cache_dir, **store_options)
        else:
            self.store = ModelStore(Path(settings.model_repo), **store_options)
        self.server: grpc.Server | None = None
        self.port: int | None = None

    def _on_models_changed(self, has_models: bool) -> None:
        # After enter_graceful_shutdown() the health servicer ignores this, as it should.
        set_serving(self.health, [SERVICE_NAME], has_models)

    def start(self) -> int:
        """Bind and start serving (NOT_SERVING until a model loads); returns the gRPC port."""
        s = self.settings
        if self.bucket is not None:
            self.bucket.check()  # wrong credentials or a missing bucket: one clear StoreError now
        servicer = EncoderServicer(Encoder(self.store))
        self.server, self.port = create_server(
            f"{s.host}:{s.port}",
            registrations=[lambda srv: encoder_pb2_grpc.add_EncoderServiceServicer_to_server(servicer, srv)],
            service_names=[SERVICE_NAME],
            health_servicer=self.health,
            serving=False,
            max_workers=s.max_workers,
            max_concurrent_rpcs=s.max_concurrent_rpcs,
            max_message_bytes=s.max_message_bytes,
            tls=s.tls,
            max_connection_age_seconds=s.max_connection_age_seconds,
            max_connection_age_grace_seconds=s.max_connection_age_grace_seconds,
        )
        log.info(
            "encoder on port %d: repository %s (poll %.1f s, keep %d), batching %s, providers %s, "
            "intra-op threads %d (%s layout)",
            self.port,
            s.model_repo,
            s.poll_seconds,
            s.keep_versions,
            {
                "off": "off",
                "adaptive": f"adaptive (max {s.max_batch_size} clips, when a queue forms)",
                "window": f"window (max {s.max_batch_size} clips, {s.max_queue_delay_ms} ms)",
            }[s.batching],
            s.providers,
            s.intra_op_threads or cpu_count(),
            s.intra_op_layout,
        )
        if self.bucket is None and not Path(s.model_repo).is_dir():
            log.warning(
                "model repository %s does not exist yet; waiting for a trainer to publish", s.model_repo
            )
        self.store.start(s.poll_seconds)
        return self.port

    def stop(self, grace_seconds: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish (up to the grace period), unload models."""
        grace = self.settings.grace_seconds if grace_seconds is None else grace_seconds
        self.health.enter_graceful_shutdown()
        self.store.stop()
        if self.server is not None:
            self.server.stop(grace).wait()
        self.store.close()
