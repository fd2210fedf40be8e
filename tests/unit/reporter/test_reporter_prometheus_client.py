"""The Prometheus client trusts the JSON status, not only the HTTP code, and names the failure."""

from __future__ import annotations

import httpx
import pytest

from services.reporter.sources.prometheus import PrometheusClient, PrometheusError


def _client(handler) -> PrometheusClient:  # type: ignore[no-untyped-def]
    return PrometheusClient("http://prom.test", transport=httpx.MockTransport(handler))


def test_error_status_in_a_200_body_is_an_error() -> None:
    c = _client(
        lambda req: httpx.Response(200, json={"status": "error", "errorType": "bad_data", "error": "parse"})
    )
    with pytest.raises(PrometheusError, match="bad_data"):
        c.query("up")


def test_non_json_body_is_an_error() -> None:
    c = _client(lambda req: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(PrometheusError, match="non-JSON"):
        c.query("up")


def test_vector_and_matrix_results_are_parsed() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("query_range"):
            assert req.url.params["step"] == "1.000"
            return httpx.Response(
                200,
                json={
                    "status": "success",
                    "data": {
                        "resultType": "matrix",
                        "result": [{"metric": {"branch": "b1"}, "values": [[10, "0.5"], [11, "0.75"]]}],
                    },
                },
            )
        return httpx.Response(
            200,
            json={
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {"branch": "b1"}, "value": [10, "3"]}],
                },
            },
        )

    c = _client(handler)
    assert c.query("x")[0].value == 3.0
    s = c.query_range("x", 10, 11, 1)[0]
    assert s.labels == {"branch": "b1"} and s.points == [(10.0, 0.5), (11.0, 0.75)]


def test_unreachable_server_is_named() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = PrometheusClient(f"http://127.0.0.1:{port}", timeout_seconds=2)
    with pytest.raises(PrometheusError, match="unreachable"):
        c.ready()
