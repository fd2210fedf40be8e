"""The contract of a report's run source: one run's status, history and results, wherever they live.

Two sources implement it: a live trainer over gRPC (``grpc_sources.TrainerSource``) and a
finished run's stored results in a run directory or a bucket (``stored_runs.StoredRunSource``).
``build.collect`` and the report trigger use only what is declared here.
"""

from __future__ import annotations

from typing import Protocol

from services.reporter.sources.grpc_sources import TrainerFetch
from trajlab.trainer.v1 import trainer_pb2


class RunSource(Protocol):
    """One run (``b1`` or ``b1@s0``) of the report."""

    branch: str  # the run's name in the report
    target: str  # where the run is read from (host:port, a run directory or its s3:// URL)
    live: bool  # a running trainer (waited for by the report trigger) or a stored snapshot (read as is)

    def status(self) -> trainer_pb2.TrainingStatus:
        """Where the run is now; a live source raises grpc.RpcError when unreachable."""
        ...

    def fetch(self) -> TrainerFetch:
        """Status, per-epoch history and results; what is not there becomes a ``Missing`` reason."""
        ...
