"""Secrets never in logs or reports: a planted OPENAI_API_KEY through a describer and a report build.

The real describer process runs with the key and a fake OpenAI on 127.0.0.1 that
rejects it (401, 403, 400, 404, 500) with a message that echoes the key in full (as a careless proxy
or gateway might). A report is then built with the same key in the reporter's
environment, describing samples through that describer. The key must appear in
none of: the describer's output at DEBUG, the reporter's log records, any file
of the report, any gRPC answer. (Container images are checked for the key by
tests/reliability/test_images.py, once the images are built.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.reporter.build import ReportSources, build_report
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource, TrainerSource
from tests.contract.reporter import kit as rkit
from tests.reliability.procs import ServiceProcess
from tests.unit.describer.kit import Reply, ScriptedServer, make_trajectory, openai_error
from trajlab.clients.describer import DescriberClient
from trajlab.config import load_settings

PLANTED_KEY = "sk-proj-PLANTED" + "x9Q2" * 10  # a key-shaped canary


def echo_key(status: int, etype: str) -> Reply:
    return openai_error(status, f"Request with key {PLANTED_KEY} refused.", etype)


@pytest.fixture(scope="module")
def leaky_openai() -> Iterator[ScriptedServer]:
    srv = ScriptedServer([echo_key(401, "invalid_request_error")])
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def describer(leaky_openai: ScriptedServer) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        "services.describer",
        {
            "TRAJLAB_DESCRIBER_PORT": "0",
            "TRAJLAB_DESCRIBER_METRICS_PORT": "-1",
            "TRAJLAB_DESCRIBER_OPENAI_BASE_URL": leaky_openai.url + "/v1",
            "TRAJLAB_DESCRIBER_LOG_LEVEL": "DEBUG",
            "TRAJLAB_DESCRIBER_JSON_LOGS": "true",
            "TRAJLAB_DESCRIBER_BREAKER_FAILURES": "100",  # every call reaches the fake, none short-circuits
            "OPENAI_API_KEY": PLANTED_KEY,
        },
    )
    yield proc
    proc.terminate()


@pytest.mark.slow
def test_planted_key_is_in_no_log_answer_or_report_file(
    describer: ServiceProcess, leaky_openai: ScriptedServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    tr = make_trajectory("parabolic", 1)
    # Each error status the SDK maps differently; each body quotes the key in full.
    for status, etype in [(401, "invalid_request_error"), (403, "permission_error"), (400, "invalid_request_error"),
                          (404, "not_found_error"), (500, "server_error")]:
        leaky_openai.script(echo_key(status, etype))
        with DescriberClient(describer.target, timeout=10) as c:
            answer = c.describe(tr.observed, tr.observed_times, backend="openai:gpt-4", predicted_class="parabolic")
        assert answer.fallback_used and answer.fallback_reason, status
        assert PLANTED_KEY not in json.dumps(answer.to_dict()), (status, answer.fallback_reason)
    assert "[redacted key]" in answer.fallback_reason
    # The key really went out (so not finding it below means something).
    assert any(PLANTED_KEY in r.headers.get("authorization", "") for r in leaky_openai.requests)

    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    caplog.set_level(logging.DEBUG)
    world = rkit.start_world(rkit.default_specs())
    try:
        sources = ReportSources(
            trainers={b: TrainerSource(b, t, timeout_seconds=5) for b, t in rkit.iter_targets(world)},
            encoder=EncoderSource(world.encoder.target) if world.encoder else None,
            describer=DescriberSource(describer.target),
            prometheus=None,
            validation=lambda: world.val,
            validation_hint="fake split",
        )
        settings = load_settings(ReporterSettings, reports_dir=tmp_path / "reports", describe_samples=2)
        result = build_report(sources, settings)
    finally:
        world.stop()
    files = [p for p in Path(result.report_dir).rglob("*") if p.is_file()]
    assert any(p.suffix == ".md" for p in files) and any(p.suffix == ".html" for p in files)
    # The report shows the OpenAI fallback (so the describer's answers, with their reasons, are in it).
    md = Path(result.markdown_path).read_text()
    assert "fallback" in md.lower()
    for p in files:
        assert PLANTED_KEY.encode() not in p.read_bytes(), f"key in report file {p}"
    assert PLANTED_KEY not in caplog.text, "key in the reporter's log records"
    assert PLANTED_KEY not in describer.output, "key in the describer's output"
