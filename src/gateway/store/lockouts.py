"""Login lockouts kept in the store (table `login_lockouts`), so a restart does not lift them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import and_, delete, insert, select

from gateway.inbound.sftp_lockout import Lockout
from gateway.store.db import Store
from gateway.store.models import LoginLockoutRow

ADDRESS_MAX = 64
USERNAME_MAX = 128


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class StoredLockouts:
    """`LockoutPersistence` over the store, for one scope ("sftp")."""

    def __init__(self, store: Store, scope: str = "sftp") -> None:
        self._store = store
        self._scope = scope

    def load(self, now: float) -> list[Lockout]:
        """Running lockouts; expired ones are deleted on the way."""
        row = LoginLockoutRow
        with self._store.transaction() as conn:
            conn.execute(delete(row).where(and_(row.scope == self._scope, row.locked_until <= _at(now))))
            rows = conn.execute(
                select(row.address, row.username, row.locked_until, row.failures).where(
                    row.scope == self._scope
                )
            ).all()
        return [Lockout(r.address, r.username, r.locked_until.timestamp(), r.failures) for r in rows]

    def save(self, lockout: Lockout) -> None:
        """Record (or extend) one lockout."""
        row = LoginLockoutRow
        address, username = lockout.address[:ADDRESS_MAX], lockout.username[:USERNAME_MAX]
        key = and_(row.scope == self._scope, row.address == address, row.username == username)
        with self._store.transaction() as conn:
            conn.execute(delete(row).where(key))
            conn.execute(
                insert(row).values(
                    scope=self._scope,
                    address=address,
                    username=username,
                    locked_until=_at(lockout.until),
                    failures=lockout.failures,
                )
            )
