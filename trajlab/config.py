"""Typed settings: environment variables and YAML files, validated at start.

Every service's settings class derives from :class:`TrajlabSettings`. Values come
from, highest priority first: keyword arguments, environment variables
(``TRAJLAB_<SECTION>_<FIELD>``, nested with ``__``), the YAML file named by
``TRAJLAB_CONFIG`` (or passed in), then the defaults written in the class. A bad
value stops the process at start with a :class:`~trajlab.errors.ConfigError`
that names the field, where it came from, and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from trajlab.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)
M = TypeVar("M", bound=BaseModel)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per bad field: ``field.path: message (got: value)``."""
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        got_s = repr(got)
        if len(got_s) > 80:
            got_s = got_s[:77] + "..."
        lines.append(f"  {loc}: {e['msg']} (got: {got_s})")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top, got {type(data).__name__}")
    return data


def validate_model(cls: type[M], data: dict[str, Any], source: str) -> M:
    """Validate plain data into a pydantic model, raising ConfigError naming each bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


class _YamlSource(PydanticBaseSettingsSource):
    """Settings source reading one YAML file (optionally one section of it)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None, section: str | None):
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            data = read_yaml(path)
            if section:
                data = data.get(section, {}) or {}
            self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        # Every key goes through, so an unknown one is refused by extra="forbid".
        return dict(self._data)


class TrajlabSettings(BaseSettings):
    """Base of every settings class: env prefix ``TRAJLAB_``, unknown keys refused."""

    model_config = SettingsConfigDict(
        env_prefix="TRAJLAB_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    # Set per load by ``load_settings``; class attributes so sources can see them.
    _yaml_path: Path | None = None
    _yaml_section: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_src = _YamlSource(settings_cls, cls._yaml_path, cls._yaml_section)
        return (init_settings, env_settings, yaml_src, file_secret_settings)


def load_settings(
    cls: type[S],
    yaml_path: str | Path | None = None,
    *,
    section: str | None = None,
    **overrides: Any,
) -> S:
    """Build settings of ``cls`` from overrides, env, YAML and defaults.

    ``yaml_path`` defaults to the ``TRAJLAB_CONFIG`` environment variable. Raises
    ConfigError naming every bad field.
    """
    path = yaml_path or os.environ.get("TRAJLAB_CONFIG") or None
    source = "environment and defaults"
    if path:
        source = f"{path} (+ environment)"
    # A subclass per call keeps the YAML location off the shared class.
    bound = type(cls.__name__, (cls,), {})
    bound._yaml_path = Path(path) if path else None
    bound._yaml_section = section
    try:
        return bound(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


class TlsSettings(BaseModel):
    """Optional TLS for a gRPC server, by PEM file paths. All None (the default) = plaintext.

    Set from the environment as e.g. ``TRAJLAB_ENCODER_TLS__CERT_FILE=/certs/encoder.pem``.
    The files are checked at start, so a wrong path stops the process naming the field.
    """

    model_config = ConfigDict(extra="forbid")

    cert_file: Path | None = None  # server certificate chain (PEM); with key_file, turns TLS on
    key_file: Path | None = None  # private key of cert_file (PEM)
    # CA bundle (PEM): when set, every client must present a certificate it signed (mutual TLS)
    client_ca_file: Path | None = None

    @model_validator(mode="after")
    def _check_files(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together (or neither, for plaintext)")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("client_ca_file (mutual TLS) needs cert_file and key_file too")
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: {path} is not a readable file")
        return self

    @property
    def enabled(self) -> bool:
        """True when the server should listen with TLS."""
        return self.cert_file is not None


class ServerSettings(TrajlabSettings):
    """What every gRPC server shares. Subclasses set their own default port."""

    host: str = "127.0.0.1"  # interface to bind; "0.0.0.0" inside containers
    port: int = 0  # gRPC port; 0 picks a free one (tests)
    metrics_host: str = "127.0.0.1"  # interface for the Prometheus /metrics endpoint
    metrics_port: int = 9100  # Prometheus /metrics port; 0 picks a free one, -1 disables it
    max_workers: int = 8  # gRPC handler threads
    max_concurrent_rpcs: int | None = 64  # beyond this, calls get RESOURCE_EXHAUSTED; None = unbounded
    max_message_bytes: int = 16 * 1024 * 1024  # bytes, both directions; larger requests are refused
    grace_seconds: float = 10.0  # seconds in-flight RPCs get to finish after SIGTERM
    log_level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR
    json_logs: bool = False  # one JSON object per log line
    tls: TlsSettings = Field(default_factory=TlsSettings)  # optional (mutual) TLS; default plaintext
    # Close each client connection after this long (seconds; None = never), so clients that
    # balance round robin over a headless Service re-resolve and reach new replicas; calls in
    # flight get max_connection_age_grace_seconds to finish. Kubernetes sets it; compose does not.
    max_connection_age_seconds: float | None = Field(None, gt=0.0)
    max_connection_age_grace_seconds: float = Field(30.0, ge=0.0)
