"""Typed Python clients for the trajlab services (one module per service).

Every client opens its channel through ``trajlab.clients._channel.open_channel``:
explicit max message size, per-call deadlines, and retries of UNAVAILABLE
through gRPC's own service config, for idempotent methods only.
"""
