"""Configuration of the embedded SFTP server (issue 6): listener settings and per-partner access."""

from __future__ import annotations

import ipaddress

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class SftpServerConfig(BaseModel):
    """Where and how the gateway's SFTP server listens."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2222, ge=0, le=65535)  # 0 = ephemeral (tests)
    host_key: str | None = None  # path; None = <data dir>/ssh_host_ed25519_key, generated on first start
    # Failed logins of one user from one address within lockout_seconds that lock that user out from there.
    max_login_failures: int = Field(default=5, ge=1)
    # Failed logins from one address (any user) that lock out *password* logins from it (keys still work).
    max_login_failures_per_address: int = Field(default=20, ge=1)
    lockout_seconds: float = Field(default=300.0, ge=0)
    # SSH connections open at once, authenticated or not; one more is closed before the SSH handshake.
    max_connections: int = Field(default=200, ge=1)
    # Connections not yet authenticated that one source address may hold at once; one more from that
    # address is closed before the SSH handshake (so one address cannot take every max_connections slot).
    max_unauthenticated_per_address: int = Field(default=30, ge=1)
    # Connections not yet authenticated, in all; None = half of max_connections. The rest is kept for
    # authenticated partners; when full, a newcomer evicts the oldest from the address holding the most.
    max_unauthenticated: int | None = Field(default=None, ge=1)
    # A connection not authenticated this long after it was accepted is closed (even one sending nothing).
    login_timeout_seconds: float = Field(default=20.0, gt=0)
    # Open file handles (uploads + downloads) one SFTP session, and all sessions of a partner, may hold.
    max_open_handles_per_session: int = Field(default=32, ge=1)
    max_open_handles_per_partner: int = Field(default=128, ge=1)
    keepalive_seconds: float = Field(default=60.0, ge=0)  # 0 = no keepalive probes
    # A name ending so (case-insensitive), or starting with a prefix below, is a temporary upload name:
    # published on close but ignored by the folder watcher until renamed (WinSCP `.filepart`).
    upload_temp_suffixes: tuple[str, ...] = (".part", ".filepart", ".tmp")
    upload_temp_prefixes: tuple[str, ...] = ("~",)
    # fsync the file and in/ before answering the client's close: an acknowledged upload survives a crash.
    fsync_uploads: bool = True

    @model_validator(mode="after")
    def _unauthenticated_within_total(self) -> SftpServerConfig:
        if self.max_unauthenticated is not None and self.max_unauthenticated > self.max_connections:
            raise ValueError("max_unauthenticated cannot exceed max_connections")
        return self

    def unauthenticated_limit(self) -> int:
        """Connections not yet authenticated allowed in all."""
        if self.max_unauthenticated is not None:
            return self.max_unauthenticated
        return max(1, self.max_connections // 2)


class SftpPartnerAuth(BaseModel):
    """How one partner logs in to the SFTP server, and what it may store."""

    model_config = ConfigDict(extra="forbid")

    authorized_keys: list[str] = []  # OpenSSH authorized_keys lines (options such as from="…" honoured)
    password_hash: str | None = None  # argon2 hash (`gateway sftp hash-password`); never a plain password
    allowed_sources: list[str] = []  # addresses or CIDR networks; empty = any
    max_file_size: int | None = Field(default=None, ge=0)
    quota_bytes: int | None = Field(default=None, ge=0)  # bytes stored in in/ + out/
    max_sessions: int = Field(default=10, ge=1)  # authenticated connections at once; one more is refused

    @field_validator("authorized_keys")
    @classmethod
    def _keys_parse(cls, lines: list[str]) -> list[str]:
        import asyncssh  # here, not at the top: checking a config does not load the SSH stack

        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                asyncssh.import_authorized_keys(line)
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise ValueError(f"not an OpenSSH authorized_keys line: {line[:40]!r}… ({exc})") from None
        return lines

    @field_validator("password_hash")
    @classmethod
    def _argon2_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("$argon2"):
            raise ValueError(
                "password_hash must be an argon2 hash (run `gateway sftp hash-password`); "
                "plain passwords are refused"
            )
        try:
            extract_parameters(value)
        except InvalidHashError:
            raise ValueError("password_hash is not a valid argon2 hash") from None
        return value

    @field_validator("allowed_sources")
    @classmethod
    def _sources_parse(cls, sources: list[str]) -> list[str]:
        for source in sources:
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError:
                raise ValueError(f"allowed_sources: {source!r} is not an address or CIDR network") from None
        return sources

    def source_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(source, strict=False) for source in self.allowed_sources]
