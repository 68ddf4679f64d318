"""SFTP push sink: deliver outbox payloads to a remote SFTP server with the asyncssh client.

One delivery = one SSH connection: upload as `<name>.part` (fsync when the server offers
`fsync@openssh.com`), rename over the final name (`posix-rename@openssh.com`, so a re-send after a crash
overwrites the file of the first attempt under the same deterministic name), then `stat` the final file
and compare its size with the payload's.

Security: the server's host key must be listed in the configured `known_hosts` file; nothing else is
trusted (no accept-any, no ~/.ssh/config, no ssh-agent, no default key files).

Error classes (the delivery worker retries `TransientSinkError`, kills the row on `PermanentSinkError`):
- connection refused / reset / timed out, SSH disconnects, size mismatch after upload → transient;
- host key not trusted (`HostKeyRejected`), authentication refused, missing known_hosts / key file,
  remote directory missing or not writable → permanent: retrying cannot succeed until an operator acts
  (edits known_hosts or the credentials, then `gateway resend`). A wrong host key is also the
  signature of a man-in-the-middle; we never send a byte after it, and the dead row is the alarm.

The sink is synchronous (the delivery worker is a thread): each `send` runs asyncssh in a private event
loop (`asyncio.run`), or in a helper thread when the calling thread already runs a loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import posixpath
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncssh
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from gateway.outbound.base import OutboxItem, PermanentSinkError, TransientSinkError

T = TypeVar("T")


class SftpSinkConfig(BaseModel):
    """`[sinks.<id>]` with `type = "sftp"`: a remote SFTP server the gateway pushes deliveries to."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sftp"] = "sftp"
    host: str = Field(min_length=1, description="remote server host name or address")
    port: int = Field(22, ge=1, le=65535)
    username: str = Field(min_length=1)
    known_hosts: str = Field(
        min_length=1, description="OpenSSH known_hosts file holding the server's host key (required)"
    )
    private_key: str = Field("", description="private key file for public-key authentication")
    private_key_passphrase: SecretStr | None = Field(None, description="passphrase of an encrypted key")
    password: SecretStr | None = Field(
        None, description="password authentication (if no key, or as fallback)"
    )
    remote_dir: str = Field(".", min_length=1, description="remote directory receiving the files")
    connect_timeout_seconds: float = Field(15.0, gt=0, description="TCP + SSH handshake + authentication")
    transfer_timeout_seconds: float = Field(300.0, gt=0, description="upload + rename + size check")

    @model_validator(mode="after")
    def _some_credentials(self) -> SftpSinkConfig:
        if not self.private_key and self.password is None:
            raise ValueError("an sftp sink needs private_key or password")
        return self


class HostKeyRejected(PermanentSinkError):
    """The server's host key is not in the configured known_hosts: nothing was sent."""


def _safe_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise PermanentSinkError(f"unsafe remote file name {name!r}")
    return name


def _run_private(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion in a private event loop, whatever the calling thread runs."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sftp-push") as pool:
        return pool.submit(asyncio.run, coro).result()


class SftpPushSink:
    """A `Sink` (outbound/base.py) that uploads each payload to `remote_dir/<remote_name>` over SFTP."""

    def __init__(self, config: SftpSinkConfig, base_dir: Path | None = None) -> None:
        self.config = config
        base = base_dir or Path.cwd()
        self._known_hosts = base / config.known_hosts
        self._private_key = base / config.private_key if config.private_key else None

    @property
    def where(self) -> str:
        c = self.config
        return f"sftp://{c.username}@{c.host}:{c.port}"

    def send(self, item: OutboxItem, payload: bytes) -> str:
        return self.upload(item.remote_name, payload)

    def upload(self, remote_name: str, payload: bytes) -> str:
        """Upload `payload` as `remote_name`; returns a receipt text, raises a Transient/PermanentSinkError."""
        name = _safe_name(remote_name)
        if not self._known_hosts.is_file():
            raise PermanentSinkError(f"{self.where}: known_hosts file {self._known_hosts} not found")
        if self._private_key is not None and not self._private_key.is_file():
            raise PermanentSinkError(f"{self.where}: private key file {self._private_key} not found")
        return _run_private(self._upload(name, payload))

    async def _connect(self) -> asyncssh.SSHClientConnection:
        c = self.config
        options: dict[str, Any] = {
            "username": c.username,
            "known_hosts": str(self._known_hosts),
            "config": None,  # never read ~/.ssh/config
            "agent_path": None,
            "client_keys": [str(self._private_key)] if self._private_key else None,
            "passphrase": c.private_key_passphrase.get_secret_value() if c.private_key_passphrase else None,
            "password": c.password.get_secret_value() if c.password else None,
            "connect_timeout": c.connect_timeout_seconds,
            "login_timeout": c.connect_timeout_seconds,
        }
        return await asyncio.wait_for(
            asyncssh.connect(c.host, c.port, **options), timeout=c.connect_timeout_seconds + 1
        )

    async def _upload(self, name: str, payload: bytes) -> str:
        c = self.config
        final = posixpath.join(c.remote_dir, name)
        part = final + ".part"
        try:
            conn = await self._connect()
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyRejected(
                f"{self.where}: host key not trusted by {self._known_hosts} ({exc.reason}); "
                "possible man-in-the-middle or a changed server key: nothing sent"
            ) from None
        except asyncssh.PermissionDenied as exc:
            raise PermanentSinkError(f"{self.where}: authentication refused ({exc.reason})") from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise PermanentSinkError(f"{self.where}: private key unusable: {exc}") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise TransientSinkError(f"{self.where}: cannot connect: {_describe(exc)}") from None
        try:
            async with conn:
                receipt = await asyncio.wait_for(
                    self._transfer(conn, part, final, payload), timeout=c.transfer_timeout_seconds
                )
        except (PermanentSinkError, TransientSinkError):
            raise
        except asyncssh.SFTPError as exc:
            if exc.code in (
                asyncssh.FX_PERMISSION_DENIED,
                asyncssh.FX_NO_SUCH_FILE,
                asyncssh.FX_NO_SUCH_PATH,
            ):
                raise PermanentSinkError(f"{self.where}: {final}: {exc.reason}") from None
            raise TransientSinkError(f"{self.where}: {final}: {exc.reason}") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise TransientSinkError(f"{self.where}: transfer of {final} failed: {_describe(exc)}") from None
        return receipt

    async def _transfer(
        self, conn: asyncssh.SSHClientConnection, part: str, final: str, payload: bytes
    ) -> str:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open(part, "wb") as fh:
                await fh.write(payload)
                # a server without fsync@openssh.com: its close() is all we get
                with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                    await fh.fsync()
            try:
                await sftp.posix_rename(part, final)
            except asyncssh.SFTPOpUnsupported:
                # plain SFTP rename refuses an existing target: remove the first attempt's file first
                if await sftp.exists(final):
                    await sftp.remove(final)
                await sftp.rename(part, final)
            size = (await sftp.stat(final)).size
            if size != len(payload):
                raise TransientSinkError(
                    f"{self.where}: {final} has {size} bytes after upload, expected {len(payload)}"
                )
        return f"{self.where}{'' if final.startswith('/') else '/'}{final} ({len(payload)} bytes)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError):
        return f"{type(exc).__name__}: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def build_sftp_sink(config: SftpSinkConfig, base_dir: Path | None = None) -> SftpPushSink:
    """Factory for `[sinks.<id>] type = "sftp"`; relative key/known_hosts paths resolve against base_dir."""
    return SftpPushSink(config, base_dir)
