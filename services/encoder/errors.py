"""Encoder-only domain errors (the shared ones live in trajlab.errors)."""

from __future__ import annotations

import grpc

from trajlab.errors import TrajlabError


class DeadlineExceeded(TrajlabError):
    """The caller's deadline passed before its clip could be run; the work was skipped."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(TrajlabError):
    """The caller went away before its clip was run; the work was skipped."""

    code = grpc.StatusCode.CANCELLED
