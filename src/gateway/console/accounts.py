"""Operator accounts, console sessions and the audit of operator actions (the console's writes).

Passwords are kept as argon2id hashes only. A session cookie carries a random token; the store keeps its
SHA-256, the operator, the session's CSRF token and its expiry, so sessions work across nodes and end
when the row goes. Every action writes one `operator_audit` row and one structlog line.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update

from gateway.store.db import Store, utcnow
from gateway.store.models import OperatorAuditRow, OperatorRow, OperatorSessionRow

ADMIN = "admin"
READ_ONLY = "read-only"
ROLES = (ADMIN, READ_ONLY)
OPERATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    """A refused account change (bad name, weak password, unknown role, name taken)."""


@dataclass(frozen=True)
class Operator:
    name: str
    role: str

    @property
    def can_act(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True)
class Session:
    token: str  # the cookie value (known only when the session is created or presented)
    operator: Operator
    csrf_token: str
    expires_at: datetime


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Operators and sessions over one store."""

    def __init__(self, store: Store, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        self.log = structlog.get_logger("gateway.console")

    # -- accounts ---------------------------------------------------------------------------------
    def add(self, name: str, password: str, role: str = ADMIN, *, replace: bool = False) -> Operator:
        if not OPERATOR_NAME.match(name):
            raise AccountError(f"operator name {name!r} must match {OPERATOR_NAME.pattern}")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
        password_hash = self.hasher.hash(password)
        with self.store.transaction() as conn:
            exists = conn.execute(select(OperatorRow.name).where(OperatorRow.name == name)).first()
            if exists and not replace:
                raise AccountError(f"operator {name!r} exists; use --replace to set a new password or role")
            if exists:
                conn.execute(
                    update(OperatorRow)
                    .where(OperatorRow.name == name)
                    .values(password_hash=password_hash, role=role, active=True)
                )
                # a new password ends every session of the old one
                conn.execute(delete(OperatorSessionRow).where(OperatorSessionRow.operator == name))
            else:
                conn.execute(
                    insert(OperatorRow).values(
                        name=name, password_hash=password_hash, role=role, active=True, created_at=utcnow()
                    )
                )
        return Operator(name, role)

    def disable(self, name: str) -> bool:
        with self.store.transaction() as conn:
            done = conn.execute(update(OperatorRow).where(OperatorRow.name == name).values(active=False))
            conn.execute(delete(OperatorSessionRow).where(OperatorSessionRow.operator == name))
            return bool(done.rowcount)

    def list(self) -> list[dict[str, object]]:
        stmt = select(
            OperatorRow.name,
            OperatorRow.role,
            OperatorRow.active,
            OperatorRow.created_at,
            OperatorRow.last_login_at,
        ).order_by(OperatorRow.name)
        with self.store.reader() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def verify(self, name: str, password: str) -> Operator | None:
        """The operator if `password` is right and the account active; the same work either way."""
        with self.store.reader() as conn:
            row = conn.execute(
                select(OperatorRow.password_hash, OperatorRow.role, OperatorRow.active).where(
                    OperatorRow.name == name
                )
            ).first()
        if row is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
            # spend the time a real check takes: no timing oracle for existing names
            with contextlib.suppress(VerificationError, InvalidHashError):
                self.hasher.verify(self._dummy_hash, password)
            return None
        try:
            self.hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return Operator(name, row.role) if row.active else None

    # -- sessions ---------------------------------------------------------------------------------
    def open_session(self, operator: Operator, hours: float, now: datetime | None = None) -> Session:
        now = now or utcnow()
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + timedelta(hours=hours)
        with self.store.transaction() as conn:
            conn.execute(delete(OperatorSessionRow).where(OperatorSessionRow.expires_at < now))
            conn.execute(
                insert(OperatorSessionRow).values(
                    token_sha256=_token_hash(token),
                    operator=operator.name,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=expires,
                )
            )
            conn.execute(
                update(OperatorRow).where(OperatorRow.name == operator.name).values(last_login_at=now)
            )
        return Session(token, operator, csrf, expires)

    def session(self, token: str | None, now: datetime | None = None) -> Session | None:
        """The live session of a cookie value; None when unknown, expired or its operator disabled."""
        if not token or len(token) > 200:
            return None
        now = now or utcnow()
        stmt = (
            select(
                OperatorSessionRow.csrf_token,
                OperatorSessionRow.expires_at,
                OperatorRow.name,
                OperatorRow.role,
            )
            .join(OperatorRow, OperatorRow.name == OperatorSessionRow.operator)
            .where(OperatorSessionRow.token_sha256 == _token_hash(token), OperatorRow.active.is_(True))
        )
        with self.store.reader() as conn:
            row = conn.execute(stmt).first()
        if row is None or row.expires_at <= now:
            return None
        return Session(token, Operator(row.name, row.role), row.csrf_token, row.expires_at)

    def close_session(self, token: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                delete(OperatorSessionRow).where(OperatorSessionRow.token_sha256 == _token_hash(token))
            )

    # -- audit ------------------------------------------------------------------------------------
    def audit(
        self,
        operator: str | None,
        action: str,
        target: str | None,
        outcome: str,
        detail: str | None = None,
        client: str | None = None,
    ) -> None:
        """One audit row and one log line per operator action (refusals included)."""
        with self.store.transaction() as conn:
            conn.execute(
                insert(OperatorAuditRow).values(
                    at=utcnow(),
                    operator=operator,
                    action=action,
                    target=target[:128] if target else None,
                    outcome=outcome,
                    detail=detail,
                    client=client[:64] if client else None,
                )
            )
        log = self.log.warning if outcome != "ok" else self.log.info
        log("console action", operator=operator, action=action, target=target, outcome=outcome,
            detail=detail, client=client)  # fmt: skip


class LoginLimiter:
    """Failed sign-ins per key (client address, operator name) in a sliding window; node-local."""

    def __init__(self, max_failures: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked(self, *keys: str) -> bool:
        now = self.clock()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in keys)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # forget keys whose window passed (bounded memory)
                for key in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window]:
                    del self._failures[key]

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
