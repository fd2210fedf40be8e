"""Optional TLS and mutual TLS on every gRPC server and client, with certificates made here.

The servers take PEM paths from ``ServerSettings.tls`` (``TRAJLAB_<SVC>_TLS__*``);
the clients from ``ClientTls`` or ``TRAJLAB_TLS_*``. A user would notice: a TLS
server refuses plaintext and clients that do not trust it; with mutual TLS it
also refuses clients without a certificate from its client CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.encoder.settings import EncoderSettings
from tests.reliability.certs import Ca, Issued
from tests.reliability.procs import ServiceProcess
from tests.unit.describer.kit import make_trajectory
from trajlab.clients._channel import ClientTls, open_channel
from trajlab.clients.describer import DescriberClient
from trajlab.config import TlsSettings, load_settings
from trajlab.errors import ConfigError
from trajlab.grpc_server import create_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("pki")
    ca, other = Ca("trajlab", d), Ca("stranger", d)
    return {
        "ca": ca,
        "other": other,
        "server": ca.issue("server", server=True),
        "client": ca.issue("client", server=False),
        "foreign_client": other.issue("foreign-client", server=False),
    }


def _serve(tls: TlsSettings) -> Iterator[str]:
    server, port = create_server("127.0.0.1:0", tls=tls, max_workers=2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def tls_target(pki: dict) -> Iterator[str]:
    s: Issued = pki["server"]
    yield from _serve(TlsSettings(cert_file=s.cert, key_file=s.key))


@pytest.fixture(scope="module")
def mtls_target(pki: dict) -> Iterator[str]:
    s: Issued = pki["server"]
    yield from _serve(TlsSettings(cert_file=s.cert, key_file=s.key, client_ca_file=pki["ca"].cert_file))


def _check(target: str, tls: ClientTls | None, *, plaintext: bool = False) -> grpc.StatusCode:
    """Health-check over a channel; the status code (OK when the handshake and call succeed)."""
    ch = grpc.insecure_channel(target) if plaintext else open_channel(target, tls=tls, retries=False)
    with ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        return grpc.StatusCode.OK


def test_tls_server_answers_clients_that_trust_its_ca_and_refuses_the_rest(pki: dict, tls_target: str) -> None:
    assert _check(tls_target, ClientTls(ca_file=pki["ca"].cert_file)) == grpc.StatusCode.OK
    # A client that trusts another CA, and a plaintext client, get no answer.
    assert _check(tls_target, ClientTls(ca_file=pki["other"].cert_file)) == grpc.StatusCode.UNAVAILABLE
    assert _check(tls_target, None, plaintext=True) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(pki: dict, mtls_target: str) -> None:
    ca = pki["ca"].cert_file
    good: Issued = pki["client"]
    foreign: Issued = pki["foreign_client"]
    assert _check(mtls_target, ClientTls(ca_file=ca, cert_file=good.cert, key_file=good.key)) == grpc.StatusCode.OK
    assert _check(mtls_target, ClientTls(ca_file=ca)) == grpc.StatusCode.UNAVAILABLE
    refused = _check(mtls_target, ClientTls(ca_file=ca, cert_file=foreign.cert, key_file=foreign.key))
    assert refused == grpc.StatusCode.UNAVAILABLE


def test_client_tls_from_the_environment(pki: dict, tmp_path: Path) -> None:
    assert ClientTls.from_env({}) is None  # nothing set: plaintext, as before
    good: Issued = pki["client"]
    env = {
        "TRAJLAB_TLS_CA_FILE": str(pki["ca"].cert_file),
        "TRAJLAB_TLS_CERT_FILE": str(good.cert),
        "TRAJLAB_TLS_KEY_FILE": str(good.key),
        "TRAJLAB_TLS_SERVER_NAME": "localhost",
    }
    tls = ClientTls.from_env(env)
    assert tls == ClientTls(pki["ca"].cert_file, good.cert, good.key, "localhost")
    with pytest.raises(ValueError, match="together"):
        ClientTls(cert_file=good.cert)


def test_tls_settings_are_checked_at_start_naming_the_field(pki: dict, tmp_path: Path, monkeypatch) -> None:
    s: Issued = pki["server"]
    monkeypatch.setenv("TRAJLAB_ENCODER_TLS__CERT_FILE", str(s.cert))
    monkeypatch.setenv("TRAJLAB_ENCODER_TLS__KEY_FILE", str(s.key))
    settings = load_settings(EncoderSettings)
    assert settings.tls.enabled and settings.tls.cert_file == s.cert
    monkeypatch.delenv("TRAJLAB_ENCODER_TLS__KEY_FILE")
    with pytest.raises(ConfigError, match=r"tls.*cert_file and key_file must be set together"):
        load_settings(EncoderSettings)
    monkeypatch.setenv("TRAJLAB_ENCODER_TLS__KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match=r"key_file: .*missing\.key is not a readable file"):
        load_settings(EncoderSettings)
    monkeypatch.delenv("TRAJLAB_ENCODER_TLS__CERT_FILE")
    monkeypatch.delenv("TRAJLAB_ENCODER_TLS__KEY_FILE")
    assert not load_settings(EncoderSettings).tls.enabled  # the default stays plaintext


@pytest.mark.slow
def test_describer_process_serves_mutual_tls_from_its_environment(pki: dict, monkeypatch) -> None:
    """``python -m services.describer`` passes its TLS settings through; DescriberClient reads TRAJLAB_TLS_*."""
    s: Issued = pki["server"]
    c: Issued = pki["client"]
    proc = ServiceProcess(
        "services.describer",
        {
            "TRAJLAB_DESCRIBER_PORT": "0",
            "TRAJLAB_DESCRIBER_METRICS_PORT": "-1",
            "TRAJLAB_DESCRIBER_TLS__CERT_FILE": str(s.cert),
            "TRAJLAB_DESCRIBER_TLS__KEY_FILE": str(s.key),
            "TRAJLAB_DESCRIBER_TLS__CLIENT_CA_FILE": str(pki["ca"].cert_file),
        },
    )
    try:
        tr = make_trajectory("circular", 0)
        monkeypatch.setenv("TRAJLAB_TLS_CA_FILE", str(pki["ca"].cert_file))
        monkeypatch.setenv("TRAJLAB_TLS_CERT_FILE", str(c.cert))
        monkeypatch.setenv("TRAJLAB_TLS_KEY_FILE", str(c.key))
        with DescriberClient(proc.target, timeout=10) as client:
            assert client.describe(tr.observed, tr.observed_times, backend="analytic").described_class == "circular"
        monkeypatch.delenv("TRAJLAB_TLS_CERT_FILE")
        monkeypatch.delenv("TRAJLAB_TLS_KEY_FILE")
        with DescriberClient(proc.target, timeout=5) as client, pytest.raises(grpc.RpcError) as e:
            client.list_backends()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "TLS on" in proc.output
    finally:
        assert proc.terminate() == 0


def test_trainer_serves_mutual_tls_from_its_settings(pki: dict, tmp_path: Path, monkeypatch) -> None:
    """The trainer passes its TLS settings to the server like the other services; TrainerClient reads TRAJLAB_TLS_*."""
    from services.trainer.server import TrainerServer
    from services.trainer.settings import TrainerSettings
    from tests.unit.trainer import kit as tkit
    from trajlab.clients.trainer import TrainerClient
    from trajlab.data import build_dataset

    s: Issued = pki["server"]
    c: Issued = pki["client"]
    monkeypatch.setenv("TRAJLAB_TRAINER_TLS__CERT_FILE", str(s.cert))
    monkeypatch.setenv("TRAJLAB_TRAINER_TLS__KEY_FILE", str(s.key))
    monkeypatch.setenv("TRAJLAB_TRAINER_TLS__CLIENT_CA_FILE", str(pki["ca"].cert_file))
    data = build_dataset(tkit.TINY_DATASET, tmp_path / "data")
    profile = tkit.write_profile_yaml(tmp_path / "tiny.yaml", tkit.tiny_profile(epochs=1))
    server = TrainerServer(
        load_settings(
            TrainerSettings, yaml_path=None, host="127.0.0.1", port=0, metrics_port=-1, branch="b4",
            profile=str(profile), data_dir=data, run_dir=tmp_path / "run", model_repo=tmp_path / "models",
            text_cache_dir=tmp_path / "text-cache", grace_seconds=1.0,
        )
    )
    port = server.start()
    try:
        monkeypatch.setenv("TRAJLAB_TLS_CA_FILE", str(pki["ca"].cert_file))
        monkeypatch.setenv("TRAJLAB_TLS_CERT_FILE", str(c.cert))
        monkeypatch.setenv("TRAJLAB_TLS_KEY_FILE", str(c.key))
        monkeypatch.setenv("TRAJLAB_TLS_SERVER_NAME", "localhost")
        with TrainerClient(f"127.0.0.1:{port}", timeout=10) as client:
            assert client.get_status().branch == "b4"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError) as e:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE  # plaintext is refused
    finally:
        server.stop(grace_seconds=1.0)
