"""Test kit for the describer: trajectories with known parameters, and local HTTP servers
that speak the OpenAI chat-completions and TGI generate APIs (bodies and error bodies
as those servers document them), scripted one response per request."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

FPS = 8.0  # frames per second, as in the seed dataset
N_OBSERVED = 16
N_TOTAL = 20  # observed + 4 forecast frames


def _plane(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = normal / np.linalg.norm(normal)
    a = np.cross(n, [1.0, 0.0, 0.0])
    if np.linalg.norm(a) < 1e-6:
        a = np.cross(n, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    return a, np.cross(n, a), n


@dataclass(frozen=True)
class TrueTrajectory:
    kind: str
    times: np.ndarray  # (N_TOTAL,) seconds
    positions: np.ndarray  # (N_TOTAL, 3)
    params: dict[str, Any]

    @property
    def observed(self) -> np.ndarray:
        return self.positions[:N_OBSERVED]

    @property
    def observed_times(self) -> np.ndarray:
        return self.times[:N_OBSERVED]

    @property
    def extent(self) -> float:
        return float(np.max(np.ptp(self.positions, axis=0)))


def make_trajectory(kind: str, seed: int = 0) -> TrueTrajectory:
    """A trajectory of ``kind`` with random orientation and parameters in dataset-like ranges."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_TOTAL) / FPS
    duration = t[-1]
    normal = rng.normal(size=3)
    e1, e2, n = _plane(normal)
    centre = np.array([0.0, 0.0, 6.0]) + rng.uniform(-0.5, 0.5, 3)
    if kind == "linear":
        v = rng.normal(size=3)
        v *= rng.uniform(1.5, 3.5) / duration / np.linalg.norm(v)
        pos = centre + np.outer(t, v)
        params = {"velocity": v, "start": centre}
    elif kind == "parabolic":
        v = rng.normal(size=3)
        v *= rng.uniform(1.0, 2.5) / np.linalg.norm(v)
        g = rng.normal(size=3)
        g *= rng.uniform(2.0, 6.0) / np.linalg.norm(g)  # any direction: the fitter must not assume -y
        pos = centre + np.outer(t, v) + 0.5 * np.outer(t * t, g)
        params = {"velocity": v, "acceleration": g, "start": centre}
    elif kind in ("circular", "helical"):
        r = rng.uniform(0.8, 1.6)
        turns = rng.uniform(1.25, 2.5) if kind == "circular" else rng.uniform(2.0, 4.0)
        w = turns * math.pi / duration
        ph = rng.uniform(0, 2 * math.pi)
        pos = centre + r * (np.outer(np.cos(w * t + ph), e1) + np.outer(np.sin(w * t + ph), e2))
        params = {"radius": r, "omega": w, "centre": centre, "normal": n}
        if kind == "helical":
            axial = rng.uniform(1.5, 3.0) / duration
            pos = pos + np.outer(t, axial * n)
            params.update({"axial_speed": axial, "axis": n})
    else:
        raise ValueError(kind)
    return TrueTrajectory(kind, t, pos, params)


# -- scripted HTTP servers -------------------------------------------------------------


@dataclass
class Reply:
    """One scripted HTTP reply."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (timeouts)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


class ScriptedServer:
    """HTTP server on 127.0.0.1:<free port>: each request takes the next scripted reply
    (the last one repeats). Records every request."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Recorded] = []
        self.health_status = 200  # what GET /health answers
        self.health_checks = 0  # GET /health requests seen (not in ``requests``)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with outer._lock:
                    outer.requests.append(
                        Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = outer.replies.pop(0) if len(outer.replies) > 1 else outer.replies[0]
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body
                ctype = "application/json"
                if isinstance(payload, dict | list):
                    data = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    data, ctype = payload.encode(), "text/html"
                else:
                    data = payload
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.headers.get("content-type", ctype))
                    for k, v in reply.headers.items():
                        if k != "content-type":
                            self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def do_GET(self) -> None:
                # TGI's GET /health: 200 when ready, 503 {"error": ..., "error_type": "healthcheck"}.
                with outer._lock:
                    outer.health_checks += 1
                status = outer.health_status
                data = (
                    b""
                    if status == 200
                    else json.dumps({"error": "unhealthy", "error_type": "healthcheck"}).encode()
                )
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # silence stderr
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def script(self, *replies: Reply) -> ScriptedServer:
        """Replace the script and forget recorded requests (a server shared by several tests)."""
        with self._lock:
            self.replies = list(replies)
            self.requests = []
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def scripted(*replies: Reply) -> Iterator[ScriptedServer]:
    srv = ScriptedServer(list(replies))
    try:
        yield srv
    finally:
        srv.close()


def answer_json(
    x: str = "1 + 0.5*t",
    y: str = "2 - 0.3*t",
    z: str = "5 + 0.2*t",
    motion: str = "linear",
    description: str = "Linear motion at 0.62 units/s.",
    **extra: Any,
) -> str:
    return json.dumps({"x": x, "y": y, "z": z, "motion": motion, "description": description, **extra})


# OpenAI chat completion (POST /v1/chat/completions) and its error bodies.
def openai_ok(
    content: str | None,
    *,
    prompt_tokens: int = 321,
    completion_tokens: int = 87,
    finish_reason: str = "stop",
    refusal: str | None = None,
) -> Reply:
    return Reply(
        200,
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4-0613",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": None,
        },
    )


def openai_error(
    status: int, message: str, etype: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(
        status, {"error": {"message": message, "type": etype, "param": None, "code": code}}, headers or {}
    )


OPENAI_429 = openai_error(
    429,
    "Rate limit reached for gpt-4 on requests per min (RPM): Limit 3.",
    "requests",
    "rate_limit_exceeded",
    {"retry-after-ms": "20"},
)
OPENAI_500 = openai_error(
    500, "The server had an error while processing your request. Sorry about that!", "server_error"
)


# TGI: POST / (the client's route) answers a list of GenerateResponse; errors are
# {"error": ..., "error_type": ...} with 424 generation, 429 overloaded, 422 validation,
# 500 incomplete_generation.
def tgi_ok(text: str, *, tokens: int = 64, finish: str = "eos_token") -> Reply:
    return Reply(
        200,
        [
            {
                "generated_text": text,
                "details": {
                    "finish_reason": finish,
                    "generated_tokens": tokens,
                    "seed": None,
                    "prefill": [],
                    "tokens": [],
                },
            }
        ],
    )


def tgi_error(status: int, message: str, error_type: str) -> Reply:
    return Reply(status, {"error": message, "error_type": error_type})


TGI_429 = tgi_error(429, "Model is overloaded", "overloaded")
TGI_500 = tgi_error(500, "Incomplete generation", "incomplete_generation")
TGI_424 = tgi_error(424, "Request failed during generation: CUDA out of memory", "generation")
TGI_422 = tgi_error(
    422, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096", "validation"
)
