"""Channels shared by every trajlab client: message size, deadlines, retries.

Retries are gRPC's own (a ``retryPolicy`` in the channel's service config), not
a hand-written loop: the library replays a call that failed with UNAVAILABLE
(server starting, restarting or draining) with exponential backoff, within the
call's deadline. Only methods listed as idempotent get a retry policy, because a
retried non-idempotent call (e.g. StartTraining) could run twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import grpc

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # bytes; equal to the servers' default
DEFAULT_TIMEOUT_SECONDS = 30.0  # per-call deadline when the caller gives none


def service_config(
    idempotent: Iterable[tuple[str, str | None]],
    *,
    max_attempts: int = 4,
    initial_backoff_seconds: float = 0.1,
    max_backoff_seconds: float = 2.0,
    backoff_multiplier: float = 2.0,
) -> str:
    """The JSON service config retrying UNAVAILABLE for ``(full service name, method or None)`` pairs.

    ``None`` as the method means every method of that service. gRPC caps
    ``max_attempts`` at 5 (first try included).
    """
    names = [{"service": s, **({"method": m} if m else {})} for s, m in idempotent]
    config: dict[str, Any] = {"methodConfig": []}
    if names:
        config["methodConfig"].append(
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": max(2, min(5, max_attempts)),
                    "initialBackoff": f"{initial_backoff_seconds:.3f}s",
                    "maxBackoff": f"{max_backoff_seconds:.3f}s",
                    "backoffMultiplier": backoff_multiplier,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
        # Stop retrying when most calls fail, so a dead server is not hammered.
        config["retryThrottling"] = {"maxTokens": 10, "tokenRatio": 0.1}
    return json.dumps(config)


def channel_options(
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    idempotent: Sequence[tuple[str, str | None]] = (),
    retries: bool = True,
) -> list[tuple[str, Any]]:
    """grpc channel options: message-size limits both ways, and the retry service config."""
    opts: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.enable_retries", 1 if retries else 0),
    ]
    if retries and idempotent:
        opts.append(("grpc.service_config", service_config(idempotent)))
    return opts


def open_channel(
    target: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    idempotent: Sequence[tuple[str, str | None]] = (),
    retries: bool = True,
) -> grpc.Channel:
    """An insecure channel to ``host:port`` with the options above (trajlab runs on a private network)."""
    return grpc.insecure_channel(
        target,
        options=channel_options(max_message_bytes=max_message_bytes, idempotent=idempotent, retries=retries),
    )
