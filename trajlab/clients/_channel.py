"""Channels shared by every trajlab client: message size, deadlines, retries.

Retries are gRPC's own (a ``retryPolicy`` in the channel's service config), not
a hand-written loop: the library replays a call that failed with UNAVAILABLE
(server starting, restarting or draining) with exponential backoff, within the
call's deadline. Only methods listed as idempotent get a retry policy, because a
retried non-idempotent call (e.g. StartTraining) could run twice.

Load balancing is client-side round robin by default (``TRAJLAB_GRPC_LB_POLICY``
overrides it, e.g. ``pick_first``): a target that resolves to several addresses -
``dns:///encoder-headless.ns.svc:50051`` (a Kubernetes headless Service) or
``ipv4:10.0.0.1:50051,10.0.0.2:50051`` - gets its calls spread over all of them, where
gRPC's own default (pick_first) would send every call down one connection. The servers'
``max_connection_age_seconds`` makes clients re-resolve, so replicas added later get calls.

TLS is optional: ``open_channel(..., tls=ClientTls(ca_file=...))``, or, for every
client at once without touching its code, the environment variables
``TRAJLAB_TLS_CA_FILE`` (root CA, PEM), ``TRAJLAB_TLS_CERT_FILE`` and
``TRAJLAB_TLS_KEY_FILE`` (client certificate for mutual TLS) and
``TRAJLAB_TLS_SERVER_NAME`` (expected name in the server certificate, when it
differs from the target's host). None of them set = plaintext, as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # bytes; equal to the servers' default
DEFAULT_TIMEOUT_SECONDS = 30.0  # per-call deadline when the caller gives none
DEFAULT_LB_POLICY = "round_robin"  # over every address the target resolves to
LB_POLICIES = ("round_robin", "pick_first")


def lb_policy_from_env(env: Mapping[str, str] | None = None) -> str:
    """``TRAJLAB_GRPC_LB_POLICY`` (round_robin or pick_first); round_robin when unset."""
    e = os.environ if env is None else env
    policy = e.get("TRAJLAB_GRPC_LB_POLICY", "").strip() or DEFAULT_LB_POLICY
    if policy not in LB_POLICIES:
        raise ValueError(f"TRAJLAB_GRPC_LB_POLICY: expected one of {', '.join(LB_POLICIES)}, got {policy!r}")
    return policy


@dataclass(frozen=True)
class ClientTls:
    """TLS for a client channel, by PEM file paths.

    ``ca_file`` None uses the system's root certificates. ``cert_file`` and
    ``key_file`` (together) present a client certificate, for servers that
    require mutual TLS. ``server_name`` overrides the name checked in the
    server's certificate (e.g. a certificate issued for ``encoder`` reached as
    ``127.0.0.1:50051``).
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("ClientTls: cert_file and key_file must be given together")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientTls | None:
        """``TRAJLAB_TLS_*`` variables as a ClientTls; None when none is set (plaintext)."""
        e = os.environ if env is None else env

        def path(name: str) -> Path | None:
            v = e.get(name, "").strip()
            return Path(v) if v else None

        tls = cls(
            ca_file=path("TRAJLAB_TLS_CA_FILE"),
            cert_file=path("TRAJLAB_TLS_CERT_FILE"),
            key_file=path("TRAJLAB_TLS_KEY_FILE"),
            server_name=e.get("TRAJLAB_TLS_SERVER_NAME", "").strip() or None,
        )
        return tls if any((tls.ca_file, tls.cert_file, tls.server_name)) else None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )


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
    lb_policy: str | None = None,
) -> list[tuple[str, Any]]:
    """grpc channel options: message-size limits, load balancing, and the retry service config."""
    opts: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.lb_policy_name", lb_policy or lb_policy_from_env()),
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
    tls: ClientTls | None = None,
    lb_policy: str | None = None,
) -> grpc.Channel:
    """A channel to ``target`` (``host:port`` or any gRPC name, e.g. ``dns:///...``) with the options above.

    Plaintext by default (trajlab runs on a private network); TLS with ``tls``, or
    with the ``TRAJLAB_TLS_*`` environment variables when ``tls`` is None.
    """
    options = channel_options(
        max_message_bytes=max_message_bytes, idempotent=idempotent, retries=retries, lb_policy=lb_policy
    )
    tls = tls if tls is not None else ClientTls.from_env()
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, tls.credentials(), options=options)


def connect_now(channel: grpc.Channel) -> None:
    """Start connecting ``channel`` now, in gRPC's own threads; return at once.

    A channel connects at its first call otherwise, so a client that will call later (the
    describer, after the encoder has answered) can have its connection ready by then.
    gRPC's public way, ``subscribe(callback, try_to_connect=True)``, starts a Python thread
    polling the state every 0.2 s, which slows the calls it should speed up; this makes the
    one call that thread makes first, on the core channel. A gRPC without it connects at
    the first call, as before.
    """
    core = getattr(channel, "_channel", None)
    kick = getattr(core, "check_connectivity_state", None)
    if callable(kick):
        kick(True)
