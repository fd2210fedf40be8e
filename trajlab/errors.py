"""Typed domain errors, mapped to gRPC status codes in one place.

Library and service code raise these; the server interceptor in
``trajlab.grpc_server`` turns them into status codes. Anything else that escapes
a handler is a bug and becomes INTERNAL with a logged traceback.
"""

from __future__ import annotations

import grpc


class TrajlabError(Exception):
    """Base of every error a user can cause or must be told about."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgument(TrajlabError):
    """A request or input is malformed; the message names the field and the expected shape."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidClip(InvalidArgument):
    """A clip's shape and bytes disagree, or its shape is not one a model accepts."""


class NotFound(TrajlabError):
    """An unknown branch, version or backend."""

    code = grpc.StatusCode.NOT_FOUND


class ModelNotFound(NotFound):
    """No such model branch or version."""


class FailedPrecondition(TrajlabError):
    """The request is valid but the system is not in a state to answer it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(TrajlabError):
    """The service is not ready yet (e.g. no model loaded) or a dependency is down."""

    code = grpc.StatusCode.UNAVAILABLE


class BackendUnavailable(Unavailable):
    """A describer backend could not answer."""


class ResourceExhausted(TrajlabError):
    """Too many concurrent requests; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class CallAbandoned(TrajlabError):
    """The caller cancelled or its deadline passed: the work was stopped, nobody waits for it."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the field."""


QUOTE_LIMIT = 64  # characters of a client's string shown in an error message


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a client-supplied value, shortened to about ``limit`` characters.

    Every error message that echoes request input goes through this, so a 4 MB
    branch name costs a few dozen bytes of error text, never megabytes of trailing
    metadata (which clients refuse as RESOURCE_EXHAUSTED, hiding the real code).
    The total length is stated when the value was cut.
    """
    if isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[: limit + 1]))
        total = len(value)
    else:
        s = str(value)
        text = repr(s[: limit + 1])
        total = len(s)
    if total <= limit:
        return text
    head = text[: max(limit, 8)]
    return f"{head}... ({total} characters)"
