"""The transactional outbox: everything that leaves the gateway later (acks, deliveries, CDAR, webhooks…).

A row is enqueued with `enqueue(conn, …)` INSIDE the transaction that decided it (`with
store.transaction() as conn:`), so it exists if and only if that decision committed. Delivery workers
claim rows like flows are claimed — a lease (`lease_owner`, `lease_expires_at`), `FOR UPDATE SKIP
LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` (the store's write transactions) on SQLite — send them through a
`Sink`, then record the outcome: sent, retried later with exponential backoff, or dead after
`max_attempts` (or at once on a permanent sink error). Acknowledgements never go dead: they are retried
forever with a capped backoff (the ack is the one thing that must come out).

Rows are at-least-once: a worker that dies between "sent" and "recorded" leaves the row pending; once the
lease expires another worker sends it again under the same `remote_name` (names are deterministic), so
the receiver sees one file, written twice at most.

States: pending → sent | dead; `resend` (operator) puts a sent or dead row back to pending (a new
attempt, same name).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from gateway.statemachine import backoff_seconds
from gateway.store.db import OUTBOX_ENQUEUED_FLAG, utcnow
from gateway.store.models import OutboxRow

if TYPE_CHECKING:
    from gateway.store.blobs import BlobStore
    from gateway.store.db import Store

KINDS: frozenset[str] = frozenset({"ack", "delivery", "cdar", "webhook", "mdn", "concentrator"})
PENDING, SENT, DEAD = "pending", "sent", "dead"
STATES: tuple[str, ...] = (PENDING, SENT, DEAD)
# Kinds that are retried forever (capped backoff) instead of going dead.
NEVER_DEAD_KINDS: frozenset[str] = frozenset({"ack"})
# conn.info key set by enqueue(): the store wakes delivery workers once the transaction has committed.
ENQUEUED_FLAG = OUTBOX_ENQUEUED_FLAG
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class OutboxItem:
    """One claimed outbox row, as plain values (safe to pass between threads)."""

    id: int
    kind: str
    sink: str
    remote_name: str
    payload_sha256: str | None
    flow_id: str | None
    invoice_id: int | None
    meta: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """How failures are retried: `max_attempts` sends before a row is dead; backoff base·2^(n-1), capped."""

    max_attempts: int = 10
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 3600.0
    never_dead_kinds: frozenset[str] = NEVER_DEAD_KINDS

    def delay(self, attempts: int) -> float:
        return backoff_seconds(attempts, self.backoff_base_seconds, self.backoff_max_seconds)


def enqueue(
    conn: Connection,
    *,
    kind: str,
    sink: str,
    remote_name: str,
    payload: bytes | None = None,
    payload_sha256: str | None = None,
    flow_id: str | None = None,
    invoice_id: int | None = None,
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Add a pending row in the caller's open transaction; returns its id.

    `payload` is kept inline in the row; without it, `payload_sha256` names a blob of the BlobStore the
    caller has already stored durably.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    if not sink:
        raise ValueError("an outbox row needs a sink id")
    if not remote_name or "/" in remote_name or remote_name.startswith("."):
        raise ValueError(f"unsafe remote name {remote_name!r}")
    if payload is None and payload_sha256 is None:
        raise ValueError("an outbox row needs a payload or the sha256 of a stored blob")
    if payload is not None:
        digest = hashlib.sha256(payload).hexdigest()
        if payload_sha256 is not None and payload_sha256 != digest:
            raise ValueError("payload_sha256 does not match the payload")
        payload_sha256 = digest
    now = now or utcnow()
    result = conn.execute(
        insert(OutboxRow).values(
            kind=kind,
            sink=sink[:128],
            remote_name=remote_name,
            payload=payload,
            payload_sha256=payload_sha256,
            flow_id=flow_id,
            invoice_id=invoice_id,
            meta_json=json.dumps(meta or {}, ensure_ascii=False, sort_keys=True),
            state=PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
    )
    conn.info[ENQUEUED_FLAG] = True
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def take_enqueued_flag(conn: Connection) -> bool:
    """True (once) if `enqueue` ran on this connection since the last call."""
    return bool(conn.info.pop(ENQUEUED_FLAG, False))


def _item(row: Any) -> OutboxItem:
    m = row._mapping
    return OutboxItem(
        id=int(m["id"]),
        kind=m["kind"],
        sink=m["sink"],
        remote_name=m["remote_name"],
        payload_sha256=m["payload_sha256"],
        flow_id=m["flow_id"],
        invoice_id=m["invoice_id"],
        meta=json.loads(m["meta_json"] or "{}"),
        attempts=int(m["attempts"]),
    )


_ITEM_COLUMNS = [c for c in OutboxRow.__table__.columns if c.name != "payload"]
AfterSent = Callable[[Connection, OutboxItem], None]
Outcome = Literal["sent", "retry", "dead", "lost"]


class Outbox:
    """Claiming and recording outbox rows over a Store (each call is one short transaction)."""

    def __init__(self, store: Store, blobs: BlobStore | None = None) -> None:
        self.store = store
        self.blobs = blobs

    def claim(
        self, worker: str, lease_seconds: float, *, now: datetime | None = None, kinds: Sequence[str] = ()
    ) -> OutboxItem | None:
        """Take one due pending row under a lease; counts the attempt.

        Rows of one flow's acknowledgement go out in order (the JSON copy before the XML of record):
        an ack row waits while an earlier ack row of the same flow is pending.
        """
        now = now or utcnow()
        earlier = aliased(OutboxRow)
        blocked = exists().where(
            earlier.flow_id == OutboxRow.flow_id,
            earlier.kind == "ack",
            earlier.state == PENDING,
            earlier.id < OutboxRow.id,
        )
        candidate = (
            select(OutboxRow.id)
            .where(
                OutboxRow.state == PENDING,
                OutboxRow.next_attempt_at <= now,
                (OutboxRow.lease_expires_at.is_(None)) | (OutboxRow.lease_expires_at < now),
                ~and_(OutboxRow.kind == "ack", OutboxRow.flow_id.is_not(None), blocked),
            )
            .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
            .limit(1)
        )
        if kinds:
            candidate = candidate.where(OutboxRow.kind.in_(list(kinds)))
        if not self.store.is_sqlite:
            candidate = candidate.with_for_update(skip_locked=True, of=OutboxRow)
        with self.store.transaction() as conn:
            row_id = conn.execute(candidate).scalar()
            if row_id is None:
                return None
            row = conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id == row_id, OutboxRow.state == PENDING)
                .values(
                    lease_owner=worker,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=OutboxRow.attempts + 1,
                )
                .returning(*_ITEM_COLUMNS)
            ).first()
            return _item(row) if row is not None else None

    def payload(self, item: OutboxItem) -> bytes:
        """The bytes to send: inline in the row, else the blob named by payload_sha256."""
        with self.store.reader() as conn:
            inline = conn.execute(select(OutboxRow.payload).where(OutboxRow.id == item.id)).scalar()
        if inline is not None:
            return bytes(inline)
        if self.blobs is None or item.payload_sha256 is None:
            raise LookupError(f"outbox row {item.id} has no inline payload and no blob store to read")
        return self.blobs.read(item.payload_sha256)

    def mark_sent(
        self,
        item: OutboxItem,
        worker: str,
        receipt: str,
        *,
        now: datetime | None = None,
        after: Sequence[AfterSent] = (),
    ) -> bool:
        """Record a successful send; `after` callbacks run in the same transaction (flow transitions,
        lifecycle statuses). False if the lease was lost (another worker has the row: it re-sends under
        the same name)."""
        now = now or utcnow()
        with self.store.transaction() as conn:
            done = conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id == item.id, OutboxRow.state == PENDING, OutboxRow.lease_owner == worker)
                .values(
                    state=SENT,
                    sent_at=now,
                    receipt=receipt[:MAX_ERROR_CHARS],
                    last_error=None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            ).rowcount
            if done != 1:
                conn.rollback()
                return False
            for callback in after:
                callback(conn, item)
        return True

    def mark_failed(
        self,
        item: OutboxItem,
        worker: str,
        error: str,
        policy: RetryPolicy,
        *,
        permanent: bool = False,
        now: datetime | None = None,
        on_dead: Sequence[AfterSent] = (),
    ) -> Outcome:
        """Record a failed send: retry after a backoff, or dead (permanent error / attempts exhausted).

        Kinds in `policy.never_dead_kinds` are always retried. `on_dead` callbacks run in the
        transaction that marks the row dead. Returns "retry", "dead" or "lost" (lease lost).
        """
        now = now or utcnow()
        immortal = item.kind in policy.never_dead_kinds
        dead = not immortal and (permanent or item.attempts >= policy.max_attempts)
        values: dict[str, Any] = dict(
            last_error=error[:MAX_ERROR_CHARS], lease_owner=None, lease_expires_at=None
        )
        if dead:
            values.update(state=DEAD)
        else:
            values.update(next_attempt_at=now + timedelta(seconds=policy.delay(item.attempts)))
        with self.store.transaction() as conn:
            done = conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id == item.id, OutboxRow.state == PENDING, OutboxRow.lease_owner == worker)
                .values(**values)
            ).rowcount
            if done != 1:
                conn.rollback()
                return "lost"
            if dead:
                for callback in on_dead:
                    callback(conn, item)
        return "dead" if dead else "retry"

    def release_stale_leases(self, *, now: datetime | None = None, all_leases: bool = False) -> int:
        now = now or utcnow()
        stmt = update(OutboxRow).where(OutboxRow.state == PENDING, OutboxRow.lease_owner.is_not(None))
        if not all_leases:
            stmt = stmt.where(OutboxRow.lease_expires_at < now)
        with self.store.transaction() as conn:
            return int(conn.execute(stmt.values(lease_owner=None, lease_expires_at=None)).rowcount)

    def next_due(self) -> datetime | None:
        """When the earliest pending row becomes due (None when nothing is pending)."""
        with self.store.reader() as conn:
            value: datetime | None = conn.execute(
                select(func.min(OutboxRow.next_attempt_at)).where(OutboxRow.state == PENDING)
            ).scalar()
        return value


def resend(conn: Connection, row_id: int, *, now: datetime | None = None) -> bool:
    """Operator: put a sent or dead row back to pending, due now (a new attempt under the same name).

    Runs in the caller's transaction; False if the row does not exist or is pending already."""
    now = now or utcnow()
    done = conn.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row_id, OutboxRow.state.in_([SENT, DEAD]))
        .values(
            state=PENDING,
            attempts=0,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error=None,
        )
    ).rowcount
    if done == 1:
        conn.info[ENQUEUED_FLAG] = True
    return bool(done == 1)


def pending_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).where(OutboxRow.state == PENDING)).scalar() or 0)
