"""The gateway's embedded SFTP server (asyncssh): partners drop flows in `/in`, fetch acks from `/out`.

Each partner logs in with its partner id as the user name and is jailed in a virtual tree of two
folders mapped onto `<partner root>/in` and `<partner root>/out` (sftp_jail):

* `/in` — write new files and list. An upload is written to a hidden temporary file in `in/`
  (`.sftp-<random>.upload`, invisible to the client and ignored by the folder watcher) and published
  under its real name by an atomic, non-replacing link the moment the client *closes* the handle;
  `on_upload(partner_id, final_path)` is then called in the event loop thread. A connection lost
  before the close, or a failed write, never publishes anything: the temporary file is deleted.
  A temporary name (`*.part`, `*.filepart`, `*.tmp`, `~*`: WinSCP and friends) is published under
  that name on close (the watcher ignores it) and taken when the client renames it to its final name.
  Name collisions: while `in/X` exists (not taken yet) a new upload of `X` is refused with a failure
  status (at open, or at close if a concurrent upload won the race); files are never overwritten and
  never silently renamed. Resume (append, reopening an existing file, writes that leave a hole) is
  refused. Only temporary names may be renamed or deleted in `/in`; nothing there can be read.
* `/out` — read, list, delete. Dot-files and temporary names (the gateway's own writes in progress)
  are hidden.

No links, directories, shell, exec, scp, port/agent/X11 forwarding. The parts: sftp_auth (who may log
in), sftp_lockout (failed logins), sftp_limits (connection counts), sftp_jail (paths), sftp_session
(file operations), sftp_close (client close vs session clean-up), sftp_hostkey. This module wires them
and runs the listener; time is read from an injected `Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Callable, Mapping
from errno import EADDRINUSE
from pathlib import Path
from typing import Any

import asyncssh
import structlog

from gateway.inbound.sftp_auth import ConnectionGuard, hash_password, verify_password
from gateway.inbound.sftp_clock import Clock, SystemClock
from gateway.inbound.sftp_close import ClientCloseDetector, CloseDetectionUnavailable
from gateway.inbound.sftp_config import SftpServerConfig
from gateway.inbound.sftp_hostkey import HostKeyError, load_or_create_host_key
from gateway.inbound.sftp_jail import PartnerArea, SftpPartner
from gateway.inbound.sftp_limits import ConnectionLimits, RefusalLog
from gateway.inbound.sftp_lockout import Lockout, LockoutPersistence, LoginLimiter
from gateway.inbound.sftp_session import SftpSession, WriteAt
from gateway.telemetry.metrics import Metrics

__all__ = ["HostKeyError", "SftpPartner", "SftpServer", "SftpStartError", "hash_password"]


class SftpStartError(Exception):
    """The SFTP server cannot start; the message is one line for the operator."""


class SftpServer:
    """The gateway's SFTP server: listens, authenticates partners, publishes their uploads."""

    def __init__(
        self,
        config: SftpServerConfig,
        partners: Mapping[str, SftpPartner],
        host_key_path: Path,
        on_upload: Callable[[str, Path], None],
        metrics: Metrics | None = None,
        logger: Any | None = None,
        *,
        clock: Clock | None = None,
        lockouts: LockoutPersistence | None = None,
        password_verifier: Callable[[str, str], bool] = verify_password,
        write_at: WriteAt = os.pwrite,  # a seam for fault tests (a write failing with EIO)
    ) -> None:
        self.config = config
        self._partners = dict(partners)
        self._host_key_path = Path(host_key_path)
        self._on_upload = on_upload
        self.metrics = metrics
        self.log = logger if logger is not None else structlog.get_logger("gateway.sftp")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.verify_password = password_verifier
        self.write_at = write_at
        self.limiter = LoginLimiter(
            config.max_login_failures,
            config.max_login_failures_per_address,
            config.lockout_seconds,
            self.clock,
        )
        self._lockouts = lockouts
        self._saving: set[asyncio.Future[None]] = set()
        self._limits = ConnectionLimits(config, self.clock)
        self._refusals = RefusalLog(self.log, self.clock)
        self.close_detector: ClientCloseDetector | None = None
        self._authorized_keys: dict[str, asyncssh.SSHAuthorizedKeys | None] = {}
        for partner_id, partner in self._partners.items():
            lines = [line for line in partner.auth.authorized_keys if line.strip()]
            self._authorized_keys[partner_id] = (
                asyncssh.import_authorized_keys("\n".join(lines) + "\n") if lines else None
            )
        self._areas: dict[str, PartnerArea] = {}
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._dummy_hash: str | None = None
        self.host_key_fingerprint: str | None = None

    # ---- used by connections and sessions ------------------------------------------------------

    def partner(self, username: str) -> SftpPartner | None:
        return self._partners.get(username)

    def authorized_keys(self, username: str) -> asyncssh.SSHAuthorizedKeys | None:
        return self._authorized_keys.get(username)

    def dummy_hash(self) -> str:
        """Verified against for unknown users, so timing does not tell which accounts exist."""
        if self._dummy_hash is None:
            self._dummy_hash = hash_password(secrets.token_urlsafe(16))
        return self._dummy_hash

    def connection_opened(self, conn: asyncssh.SSHServerConnection, address: str) -> bool:
        """Count a new, not yet authenticated connection from `address`; False (counted, logged): refuse."""
        admission = self._limits.admit(conn, address)
        if not admission.accepted:
            self._refuse(admission.refusal or "refused", address, **admission.limit)
            return False
        for victim, victim_address in admission.evicted:
            self._refuse("evicted_unauthenticated", victim_address)
            if isinstance(victim, asyncssh.SSHServerConnection):
                victim.abort()
        self._connections.add(conn)
        return True

    def _refuse(self, result: str, address: str, **limit: int) -> None:
        if self.metrics:
            self.metrics.sftp_logins.labels(result=result).inc()
        self._refusals.refused(result, address, **limit)

    def connection_authenticated(self, conn: asyncssh.SSHServerConnection, address: str) -> None:
        self._limits.authenticated(conn, address)

    def connection_closed(self, conn: asyncssh.SSHServerConnection, address: str) -> None:
        self._connections.discard(conn)
        self._limits.closed(conn, address)

    def unauthenticated_count(self, address: str) -> int:
        """Connections from `address` open now and not authenticated yet."""
        return self._limits.unauthenticated_count(address)

    @property
    def unauthenticated_total(self) -> int:
        return self._limits.unauthenticated_total

    @property
    def connection_count(self) -> int:
        """SSH connections counted now, authenticated or not."""
        return self._limits.connection_count

    def partner_session_count(self, partner_id: str) -> int:
        """Authenticated connections the partner has open now."""
        return self._limits.partner_session_count(partner_id)

    def session_available(self, partner_id: str) -> bool:
        partner = self._partners.get(partner_id)
        return partner is not None and self.partner_session_count(partner_id) < partner.auth.max_sessions

    def claim_session(self, partner_id: str) -> bool:
        partner = self._partners.get(partner_id)
        return partner is not None and self._limits.claim_session(partner_id, partner.auth.max_sessions)

    def release_session(self, partner_id: str) -> None:
        self._limits.release_session(partner_id)

    def lockouts_started(self, lockouts: list[Lockout]) -> None:
        """Log the lockouts a failed login started, and keep them in the store (in the background)."""
        for lockout in lockouts:
            self.log.warning(
                "sftp.lockout",
                address=lockout.address,
                user=lockout.username or None,
                scope="user" if lockout.username else "address (password logins)",
                seconds=self.config.lockout_seconds,
                failures=lockout.failures,
            )
            if self._lockouts is not None:
                saving = asyncio.get_running_loop().run_in_executor(None, self._save_lockout, lockout)
                self._saving.add(saving)
                saving.add_done_callback(self._saving.discard)

    def _save_lockout(self, lockout: Lockout) -> None:
        assert self._lockouts is not None
        try:
            self._lockouts.save(lockout)
        except Exception:  # noqa: BLE001 - the lockout holds in memory; only a restart would lift it
            self.log.exception("sftp.lockout_not_saved", address=lockout.address)

    def session_opened(self) -> None:
        if self.metrics:
            self.metrics.sftp_sessions.inc()

    def session_closed(self) -> None:
        if self.metrics:
            self.metrics.sftp_sessions.dec()

    def notify_upload(self, partner_id: str, path: Path) -> None:
        try:
            self._on_upload(partner_id, path)
        except Exception:  # the file is published; the watcher's periodic scan will still take it
            self.log.exception("sftp.on_upload_failed", partner=partner_id, file=path.name)

    def _make_session(self, chan: asyncssh.SSHServerChannel[bytes]) -> SftpSession:
        username = chan.get_extra_info("username")
        area = self._areas.get(username)
        if area is None:  # cannot happen: only configured partners authenticate
            raise asyncssh.DisconnectError(asyncssh.DISC_BY_APPLICATION, "unknown partner")
        self.log.info("sftp.session", partner=username)
        return SftpSession(chan, self, area)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check, then listen; a problem raises SftpStartError (or HostKeyError) with a one-line message."""
        try:
            self.close_detector = ClientCloseDetector()
        except CloseDetectionUnavailable as exc:
            raise SftpStartError(str(exc)) from None
        key, created = await asyncio.to_thread(load_or_create_host_key, self._host_key_path)
        if created:
            self.log.info("sftp.host_key_generated", path=str(self._host_key_path))
        self.host_key_fingerprint = str(key.get_fingerprint("sha256"))
        if self._lockouts is not None:
            try:
                stored = await asyncio.to_thread(self._lockouts.load, self.clock.now())
            except Exception:  # noqa: BLE001 - e.g. a database not migrated yet: lockouts stay in memory
                self.log.exception("sftp.lockouts_not_restored")
            else:
                restored = self.limiter.restore(stored)
                if restored:
                    self.log.info("sftp.lockouts_restored", count=restored)
        for partner_id, partner in self._partners.items():
            area = PartnerArea(partner, self.config, self.clock)
            stale = area.remove_stale_temps()
            if stale:
                self.log.info("sftp.stale_uploads_removed", partner=partner_id, count=stale)
            self._areas[partner_id] = area
        try:
            self._acceptor = await asyncssh.listen(
                self.config.host,
                self.config.port,
                server_factory=lambda: ConnectionGuard(self),
                server_host_keys=[key],
                sftp_factory=self._make_session,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_pty=False,
                login_timeout=self.config.login_timeout_seconds,
                keepalive_interval=self.config.keepalive_seconds,
                keepalive_count_max=3,
            )
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            hint = (
                " (another gateway or SSH server uses it? see [sftp] port)" if exc.errno == EADDRINUSE else ""
            )
            raise SftpStartError(
                f"SFTP server cannot listen on {self.config.host}:{self.config.port}: {reason}{hint}"
            ) from None
        self.log.info(
            "sftp.listening",
            host=self.config.host,
            port=self.port,
            host_key_fingerprint=self.host_key_fingerprint,
            partners=len(self._partners),
        )

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), timeout=5)
        if self._acceptor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._acceptor.wait_closed(), timeout=5)
            self._acceptor = None
        if self._saving:
            await asyncio.gather(*self._saving, return_exceptions=True)
        self.log.info("sftp.stopped")

    @property
    def port(self) -> int:
        if self._acceptor is None:
            raise RuntimeError("SFTP server not started")
        return self._acceptor.get_port()
