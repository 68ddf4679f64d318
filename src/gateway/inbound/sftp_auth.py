"""Authentication policy of the SFTP server, per connection: who may log in, from where, how often.

* a partner's `allowed_sources` (addresses / networks) and its `max_sessions`;
* failed logins counted by `LoginLimiter` (sftp_lockout): per (address, user) and per address;
* timing: a password attempt always runs the argon2 verification — against the partner's hash, or a
  dummy hash for an unknown user — before any refusal (locked out, source not allowed), so the answer
  time does not tell which partner names exist or which are refused (issue 16, item 11).
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING

import asyncssh
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.inbound.sftp_config import SftpPartnerAuth

if TYPE_CHECKING:
    from gateway.inbound.sftp_server import SftpServer


def hash_password(password: str) -> str:
    """The argon2id hash to put in a partner's `password_hash`."""
    if not password:
        raise ValueError("empty password")
    return PasswordHasher().hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def canonical_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def source_allowed(auth: SftpPartnerAuth, address: str) -> bool:
    if not auth.allowed_sources:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in auth.source_networks())


class ConnectionGuard(asyncssh.SSHServer):
    """One SSH connection's admission and authentication."""

    def __init__(self, owner: SftpServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None
        self._address = ""
        self._username = ""
        self._denied: str | None = None  # locked_out / source_denied / too_many_sessions: all refused
        self._key_failure_counted = False  # a client offering several keys counts once per connection
        self._authenticated = False
        self._holds_session = False  # counted in the partner's max_sessions

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("", 0)
        self._address = canonical_address(str(peer[0]))
        if not self._owner.connection_opened(conn, self._address):
            conn.abort()  # before asyncssh sends its version string: no handshake work at all
            return
        self._conn = conn
        self._owner.log.info("sftp.connect", address=self._address, port=peer[1])

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is None:  # refused in connection_made, already counted and logged
            return
        self._owner.connection_closed(self._conn, self._address)
        if self._holds_session:
            self._holds_session = False
            self._owner.release_session(self._username)
        self._owner.log.info(
            "sftp.disconnect",
            address=self._address,
            partner=self._username if self._authenticated else None,
            error=str(exc) if exc else None,
        )

    def begin_auth(self, username: str) -> bool:
        self._username = username
        partner = self._owner.partner(username)
        if partner is not None and not source_allowed(partner.auth, self._address):
            self._deny("source_denied")
        return True

    def _deny(self, result: str) -> None:
        if self._denied is None:
            self._denied = result
            if self._owner.metrics:
                self._owner.metrics.sftp_logins.labels(result=result).inc()
            self._owner.log.warning(
                "sftp.login_refused", user=self._username, address=self._address, result=result
            )

    def _refusing(self, *, password: bool) -> bool:
        limiter = self._owner.limiter
        if self._denied is None and limiter.locked(self._address, self._username, password=password):
            self._deny("locked_out")
        return self._denied is not None

    def _partner_full(self, username: str) -> bool:
        """Refuse (once counted) right credentials when the partner already has max_sessions open."""
        if self._owner.session_available(username):
            return False
        self._deny("too_many_sessions")
        return True

    def _failed(self, result: str) -> None:
        owner = self._owner
        if owner.metrics:
            owner.metrics.sftp_logins.labels(result=result).inc()
        owner.log.warning("sftp.login_failed", user=self._username, address=self._address, result=result)
        owner.lockouts_started(owner.limiter.failure(self._address, self._username))

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._refusing(password=False):
            return False
        partner = self._owner.partner(username)
        keys = self._owner.authorized_keys(username) if partner else None
        if keys is not None and keys.validate(key, self._address, self._address) is not None:
            return not self._partner_full(username)
        if not self._key_failure_counted:
            self._key_failure_counted = True
            self._failed("unknown_user" if partner is None else "bad_key")
        return False

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        partner = self._owner.partner(username)
        stored = partner.auth.password_hash if partner else None
        # Verified whatever the outcome, refusals included: every answer costs one argon2 check.
        ok = await asyncio.to_thread(
            self._owner.verify_password, stored or self._owner.dummy_hash(), password
        )
        if self._refusing(password=True):
            return False
        if ok and stored is not None:
            return not self._partner_full(username)
        self._failed("unknown_user" if partner is None else "bad_password")
        return False

    def auth_completed(self) -> None:
        # Validation and this call run without yielding to the loop, so the check in _partner_full
        # still holds; claiming here keeps the count exact whatever asyncssh does in between.
        owner = self._owner
        if not owner.claim_session(self._username):
            self._deny("too_many_sessions")
            if self._conn is not None:
                self._conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, "too many sessions")
            return
        self._holds_session = True
        self._authenticated = True
        if self._conn is not None:
            owner.connection_authenticated(self._conn, self._address)
        owner.limiter.success(self._address, self._username)
        if owner.metrics:
            owner.metrics.sftp_logins.labels(result="ok").inc()
        owner.log.info("sftp.login", partner=self._username, address=self._address, result="ok")

    # Everything but the sftp subsystem is refused (asyncssh refuses shell/exec without a factory).
    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False
