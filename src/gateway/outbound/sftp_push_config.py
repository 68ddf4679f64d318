"""`[sinks.<id>]` of type sftp as configuration: a model light to import (asyncssh is not loaded)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SftpSinkConfig(BaseModel):
    """`[sinks.<id>]` with `type = "sftp"`: a remote SFTP server the gateway pushes deliveries to."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sftp"] = "sftp"
    host: str = Field(min_length=1, description="remote server host name or address")
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1)
    known_hosts: str = Field(
        min_length=1, description="OpenSSH known_hosts file holding the server's host key (required)"
    )
    private_key: str = Field(default="", description="private key file for public-key authentication")
    private_key_passphrase: SecretStr | None = Field(
        default=None, description="passphrase of an encrypted key"
    )
    password: SecretStr | None = Field(
        default=None, description="password authentication (if no key, or as fallback)"
    )
    remote_dir: str = Field(default=".", min_length=1, description="remote directory receiving the files")
    connect_timeout_seconds: float = Field(
        default=15.0, gt=0, description="TCP + SSH handshake + authentication"
    )
    idle_close_seconds: float = Field(
        default=60.0, ge=0, description="close the kept connection after this long unused; 0 = per delivery"
    )
    transfer_timeout_seconds: float = Field(default=300.0, gt=0, description="upload + rename + size check")

    @model_validator(mode="after")
    def _some_credentials(self) -> SftpSinkConfig:
        if not self.private_key and self.password is None:
            raise ValueError("an sftp sink needs private_key or password")
        return self
