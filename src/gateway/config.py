"""Typed configuration: TOML → pydantic models (`extra="forbid"`: an unknown key is an error).

`load_config(data_dir)` reads `<data dir>/gateway.toml`; relative paths in it are relative to the data
dir. `ConfigError` messages name the key path (`partners.acme.sftp.port: …`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.as2.config import As2Config, PartnerAs2Config
from gateway.errors import ConfigError
from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig
from gateway.outbound.sftp_push_config import SftpSinkConfig
from gateway.transforms.limits import IdentifyLimits
from gateway.validation.plan import ValidationConfig

PARTNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntakeConfig(Strict):
    scan_interval_seconds: float = Field(
        2.0, gt=0, description="periodic scan of the in/ folders (the truth)"
    )
    min_age_seconds: float = Field(1.0, ge=0, description="size+mtime unchanged this long = stable")
    max_flow_bytes: int = Field(100_000_000, gt=0, description="larger files get IRR_TAILLE_F")
    watch: bool = Field(True, description="use filesystem events as hints (watchdog)")


class WorkersConfig(Strict):
    threads: int = Field(4, ge=1, le=64)
    max_attempts: int = Field(5, ge=1, description="transient failures before quarantine")
    max_crashes: int = Field(
        2, ge=1, description="daemon crashes charged to a flow (alone in flight) before quarantine"
    )
    backoff_base_seconds: float = Field(2.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(300.0, gt=0)
    poll_interval_seconds: float = Field(0.5, gt=0)


class StoreConfig(Strict):
    url: str = Field("", description="SQLAlchemy URL; empty = SQLite file gateway.db in the data dir")


class AcksConfig(Strict):
    json_copy: bool = Field(False, description="also write the acknowledgement as JSON")
    max_findings_per_invoice: int = Field(50, ge=1)


class RetentionConfig(Strict):
    """What `gateway purge` may delete; 0 keeps forever (the default)."""

    ack_days: int = Field(0, ge=0, description="acknowledgements in out/ older than this; 0 = keep forever")
    blob_days: int = Field(
        0, ge=0, description="flow copies in spool/blobs older than this; 0 = keep forever"
    )


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    file: str = Field("", description="also append JSON lines to this file (relative to the data dir)")


class MetricsConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)


class ApiConfig(Strict):
    """The partner-facing HTTP listener: AFNOR Flow Service `/v1` (issue 21) and the console."""

    enabled: bool = Field(False, description="serve the Flow Service API (partners need a token)")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls_cert_file: str = Field("", description="PEM certificate (chain); with tls_key_file = HTTPS")
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-For/-Proto are believed",
    )
    rate_limit_per_second: float = Field(10.0, gt=0, description="sustained requests per token")
    rate_limit_burst: int = Field(40, ge=1, description="requests a token may make at once")
    max_webhooks_per_partner: int = Field(10, ge=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_https_only: bool = Field(False, description="refuse http:// callback URLs")
    webhook_allow_private_networks: bool = Field(
        False, description="accept callback URLs on loopback/private addresses (SSRF guard off)"
    )
    max_connections: int = Field(256, ge=1, description="open connections; beyond them 503 at once")

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiConfig:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class ConsoleConfig(Strict):
    """The operators' web console, served under /console by the [api] listener (issue 22)."""

    enabled: bool = Field(True, description="mount the console under /console on the API listener")
    session_hours: float = Field(8.0, gt=0, le=720, description="a sign-in lasts this long")
    secure_cookie: Literal["auto", "always"] = Field(
        "auto", description="auto: Secure when the request came over TLS; always: behind a TLS proxy"
    )
    login_max_failures: int = Field(5, ge=1, description="failed sign-ins per client and per name …")
    login_window_seconds: float = Field(300.0, gt=0, description="… within this window before refusing")
    page_size: int = Field(200, ge=10, le=5000, description="rows shown per list page")


class PartnerConfig(Strict):
    name: str = ""
    enabled: bool = True
    folder: str = Field("", description="partner root holding in/ and out/; default partners/<id>")
    sftp: SftpPartnerAuth | None = Field(None, description="SFTP access; none = folder drops only")
    as2: PartnerAs2Config | None = Field(None, description="AS2 station of the partner; none = no AS2")


class DeliveryConfig(Strict):
    """The delivery workers that send outbox rows (acks, deliveries) through their sinks."""

    threads: int = Field(2, ge=1, le=64, description="delivery worker threads")
    max_attempts: int = Field(10, ge=1, description="sends of a delivery before it is dead (acks: never)")
    backoff_base_seconds: float = Field(5.0, gt=0, description="first retry delay; doubles each attempt")
    backoff_max_seconds: float = Field(3600.0, gt=0, description="longest delay between two deliveries")
    ack_backoff_max_seconds: float = Field(
        60.0, gt=0, description="longest delay between two tries of an acknowledgement (retried forever)"
    )
    lease_seconds: float = Field(
        600.0, gt=0, description="a worker's hold on a row while sending it; longer than the slowest send"
    )
    poll_interval_seconds: float = Field(2.0, gt=0, description="idle workers look for due rows this often")


class FolderSinkConfig(Strict):
    """`[sinks.<id>]` with `type = "folder"`: a local directory (`.part` + fsync + rename)."""

    type: Literal["folder"]
    path: str = Field(min_length=1, description="directory receiving the files (relative to the data dir)")


SinkConfig = Annotated[FolderSinkConfig | SftpSinkConfig, Field(discriminator="type")]


class LifecycleConfig(Strict):
    """Invoice lifecycle statuses (issue 18): how the gateway signs the CDAR messages it sends."""

    platform_name: str = Field(
        default="flow-gateway", min_length=1, description="MDT-20, our platform's name"
    )
    platform_id: str = Field(
        default="", description="our platform matricule (GlobalID schemeID 0238), if any"
    )
    concentrator_sink: str = Field(
        default="",
        description="sink id receiving the national concentrator copies (200, 210, 212, 213); empty: none",
    )


class GatewayConfig(Strict):
    node_name: str = Field("", description="worker name in events; default host name + pid")
    intake: IntakeConfig = IntakeConfig()
    workers: WorkersConfig = WorkersConfig()
    store: StoreConfig = StoreConfig()
    acks: AcksConfig = AcksConfig()
    retention: RetentionConfig = RetentionConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    api: ApiConfig = ApiConfig()
    identify: IdentifyLimits = IdentifyLimits()
    validation: ValidationConfig = ValidationConfig()
    sftp: SftpServerConfig = SftpServerConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    console: ConsoleConfig = ConsoleConfig()
    partners: dict[str, PartnerConfig] = Field(
        default_factory=lambda: {"demo": PartnerConfig(name="Demo partner")}
    )
    delivery: DeliveryConfig = DeliveryConfig()
    as2: As2Config = As2Config()
    sinks: dict[str, SinkConfig] = Field(
        default_factory=dict, description="named sinks a directory line may deliver to, by id"
    )

    @field_validator("sinks")
    @classmethod
    def _sink_ids(cls, sinks: dict[str, Any]) -> dict[str, Any]:
        for sid in sinks:
            if not PARTNER_ID.match(sid):
                raise ValueError(f"sink id {sid!r} must match {PARTNER_ID.pattern} (no ':')")
        return sinks

    @field_validator("partners")
    @classmethod
    def _partner_ids(cls, partners: dict[str, PartnerConfig]) -> dict[str, PartnerConfig]:
        for pid in partners:
            if not PARTNER_ID.match(pid):
                raise ValueError(f"partner id {pid!r} must match {PARTNER_ID.pattern}")
        return partners


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def exposure_warnings(config: GatewayConfig) -> list[str]:
    """Settings that are accepted but expose data: shown by `gateway check-config` and logged at start."""
    warnings = []
    if config.metrics.enabled and not _is_loopback(config.metrics.host):
        warnings.append(
            f"metrics.host = {config.metrics.host!r}: the monitoring port is not authenticated and its "
            "/api shows SIRETs, VAT ids and totals; keep it on 127.0.0.1 or behind a firewall"
        )
    api = config.api
    if api.enabled and not _is_loopback(api.host) and not api.tls_cert_file and not api.trusted_proxies:
        warnings.append(
            f"api.host = {api.host!r} without TLS (api.tls_cert_file) or a TLS reverse proxy "
            "(api.trusted_proxies): bearer tokens and invoices would cross the network in clear"
        )
    return warnings


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{path}: {message}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any]) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config_file(path: Path) -> GatewayConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data)
