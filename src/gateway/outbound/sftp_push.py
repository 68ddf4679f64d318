"""SFTP push sink: deliver outbox payloads to a remote SFTP server with the asyncssh client.

Each delivery: upload as `<name>.part` (fsync when the server offers
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

The sink is synchronous (the delivery worker is a thread): asyncssh runs on a private event loop in a
daemon thread of the sink; the connection is kept between deliveries (`idle_close_seconds`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import posixpath
import threading
from pathlib import Path
from typing import Any

import asyncssh

from gateway.outbound.base import OutboxItem, PermanentSinkError, TransientSinkError
from gateway.outbound.sftp_push_config import SftpSinkConfig


class HostKeyRejected(PermanentSinkError):
    """The server's host key is not in the configured known_hosts: nothing was sent."""


def _safe_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise PermanentSinkError(f"unsafe remote file name {name!r}")
    return name


_CONNECTION_ERRORS = (OSError, asyncssh.DisconnectError, asyncssh.ChannelOpenError, TimeoutError)


class SftpPushSink:
    """A `Sink` (outbound/base.py) that uploads each payload to `remote_dir/<remote_name>` over SFTP.

    Thread-safe; asyncssh runs on a private event loop in a daemon thread started on first use, so the
    caller needs no loop (and may even run one). The SSH connection and its SFTP session are reused
    between deliveries and closed after `idle_close_seconds` without one (0 = one connection per
    delivery); a reused connection found dead is replaced once, at once. `close()` ends the thread.
    """

    def __init__(self, config: SftpSinkConfig, base_dir: Path | None = None) -> None:
        self.config = config
        base = base_dir or Path.cwd()
        self._known_hosts = base / config.known_hosts
        self._private_key = base / config.private_key if config.private_key else None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # owned by the loop thread:
        self._session_lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._busy = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self.connections_opened = 0  # SSH connections this sink has opened (observability, tests)

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
        future = asyncio.run_coroutine_threadsafe(self._upload(name, payload), self._running_loop())
        c = self.config
        budget = 2 * (c.connect_timeout_seconds + c.transfer_timeout_seconds) + 10  # two tries at most
        try:
            return future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TransientSinkError(f"{self.where}: no answer within {budget:.0f} s") from None

    def close(self) -> None:
        """Close the connection and stop the loop thread (a later send starts them again)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._drop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"sftp-push-{self.config.host}", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                self._session_lock = asyncio.Lock()  # never bound to a previous loop
            return self._loop

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
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(c.host, c.port, **options), timeout=c.connect_timeout_seconds + 1
            )
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
        self.connections_opened += 1
        return conn

    async def _session(self) -> tuple[asyncssh.SFTPClient, bool]:
        """The SFTP session (opened if needed) and whether it was reused."""
        async with self._session_lock:
            if self._sftp is not None:
                return self._sftp, True
            conn = await self._connect()
            try:
                sftp = await asyncio.wait_for(
                    conn.start_sftp_client(), timeout=self.config.connect_timeout_seconds
                )
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                conn.close()
                raise TransientSinkError(f"{self.where}: no SFTP session: {_describe(exc)}") from None
            self._conn, self._sftp = conn, sftp
            return sftp, False

    async def _drop(self) -> None:
        conn, sftp = self._conn, self._sftp
        self._conn = self._sftp = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if sftp is not None:
            sftp.exit()
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), timeout=5)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self._busy:
            return  # the send in progress re-arms the timer when it ends
        asyncio.get_running_loop().create_task(self._drop())

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        delay = self.config.idle_close_seconds
        self._idle_timer = asyncio.get_running_loop().call_later(delay, self._idle_check)

    async def _upload(self, name: str, payload: bytes) -> str:
        self._busy += 1
        try:
            return await self._upload_once_or_twice(name, payload)
        finally:
            self._busy -= 1
            if self._busy == 0 and self._sftp is not None:
                if self.config.idle_close_seconds == 0:
                    await self._drop()
                else:
                    self._arm_idle_timer()

    async def _upload_once_or_twice(self, name: str, payload: bytes) -> str:
        c = self.config
        final = posixpath.join(c.remote_dir, name)
        part = final + ".part"
        while True:
            sftp, reused = await self._session()
            try:
                return await asyncio.wait_for(
                    self._transfer(sftp, part, final, payload), timeout=c.transfer_timeout_seconds
                )
            except (PermanentSinkError, TransientSinkError):
                raise
            except (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection, *_CONNECTION_ERRORS) as exc:
                await self._drop()
                if reused and not isinstance(exc, TimeoutError):
                    continue  # the kept connection had died meanwhile: one more try on a fresh one
                raise TransientSinkError(
                    f"{self.where}: transfer of {final} failed: {_describe(exc)}"
                ) from None
            except asyncssh.SFTPError as exc:
                if exc.code in (
                    asyncssh.FX_PERMISSION_DENIED,
                    asyncssh.FX_NO_SUCH_FILE,
                    asyncssh.FX_NO_SUCH_PATH,
                ):
                    raise PermanentSinkError(f"{self.where}: {final}: {exc.reason}") from None
                raise TransientSinkError(f"{self.where}: {final}: {exc.reason}") from None
            except asyncssh.Error as exc:
                await self._drop()
                raise TransientSinkError(
                    f"{self.where}: transfer of {final} failed: {_describe(exc)}"
                ) from None

    async def _transfer(self, sftp: asyncssh.SFTPClient, part: str, final: str, payload: bytes) -> str:
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
