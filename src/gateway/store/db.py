"""The store: engine set-up (SQLite WAL or PostgreSQL), versioned schema, and every query.

Every state change is one transaction holding a guarded `UPDATE … WHERE state = :expected` and its
`flow_events` row. On SQLite write transactions start with `BEGIN IMMEDIATE` so two threads never
deadlock on a lock upgrade; on PostgreSQL the work queue is claimed with `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, insert, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from gateway.errors import SchemaError
from gateway.statemachine import WORKABLE_STATES, FlowState
from gateway.store.models import Base, FlowEventRow, FlowRow, InvoiceRow

# conn.info key set by store/outbox.py `enqueue`: `transaction()` runs `after_outbox_commit` hooks.
OUTBOX_ENQUEUED_FLAG = "gateway_outbox_enqueued"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_flow_id(now: datetime | None = None) -> str:
    """Time-ordered, readable, unique: 20261124T231502123Z-9f3a1c07d2."""
    now = now or utcnow()
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-" + secrets.token_hex(5)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"timeout": 60, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(
                "PRAGMA synchronous=FULL"
            )  # a committed flow row survives a power cut: the claim goes after it
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # Writers take the write lock up front (no deadlock on upgrade); readers never wait for it.
            read_only = conn.get_execution_options().get("gateway_read_only")
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LEGACY_SCHEMA_TABLE = "schema_version"  # gateway 0.1 kept its own version number (1) here
LEGACY_REVISION = "0001"  # the Alembic revision equal to that schema
MIGRATION_LOCK_KEY = 0x6761746577617901  # PostgreSQL advisory lock held while migrating


def _alembic_config(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"migrations have {len(heads)} heads ({', '.join(heads)}); expected one")
    return heads[0]


def current_revision(conn: Connection) -> str | None:
    """The schema's Alembic revision; LEGACY_REVISION for a 0.1 database, None for an empty one."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None and inspect(conn).has_table(LEGACY_SCHEMA_TABLE):
        return LEGACY_REVISION
    return revision


def migrate(engine: Engine) -> str | None:
    """Bring the schema to the newest revision; returns the revision found before (None: empty).

    An empty database gets every table at once (`create_all`) and is stamped with the head revision; an
    existing one runs the Alembic migrations from its revision. On PostgreSQL an advisory lock makes
    concurrent callers (several nodes starting) wait for each other.
    """
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
        try:
            before = current_revision(conn)
            conn.rollback()
            cfg = _alembic_config(conn)
            if before is None:
                with conn.begin():
                    Base.metadata.create_all(conn)
                alembic_command.stamp(cfg, "head")
            else:
                if (
                    before == LEGACY_REVISION
                    and MigrationContext.configure(conn).get_current_revision() is None
                ):
                    alembic_command.stamp(cfg, LEGACY_REVISION)
                alembic_command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if postgres:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    return before


def check_schema(engine: Engine) -> str:
    """The current revision if it is this code's head; SchemaError (saying what to run) otherwise."""
    with engine.connect() as conn:
        current = current_revision(conn)
    head = head_revision()
    if current == head:
        return current
    if current is None:
        raise SchemaError(
            "the database has no gateway schema yet: start `gateway run` once, or run `gateway db upgrade`"
        )
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this gateway ({head}): upgrade the gateway"
        )
    raise SchemaError(
        f"the database schema ({current}) is older than this gateway ({head}): run `gateway db upgrade`"
    )


@dataclass(frozen=True)
class FlowSnapshot:
    """A flow row as read: plain values, safe to pass between threads."""

    id: str
    partner: str
    source: str
    filename: str
    size: int
    sha256: str | None
    received_at: datetime
    state: FlowState
    checkpoint: FlowState | None
    attempts: int
    claims: int
    duplicate_of: str | None
    refused_reason: str | None
    values: dict[str, Any]


def _snapshot(row: Any) -> FlowSnapshot:
    mapping = dict(row._mapping)
    return FlowSnapshot(
        id=mapping["id"],
        partner=mapping["partner"],
        source=mapping["source"],
        filename=mapping["filename"],
        size=mapping["size"],
        sha256=mapping["sha256"],
        received_at=mapping["received_at"],
        state=FlowState(mapping["state"]),
        checkpoint=FlowState(mapping["checkpoint"]) if mapping["checkpoint"] else None,
        attempts=mapping["attempts"],
        claims=mapping["claims"],
        duplicate_of=mapping["duplicate_of"],
        refused_reason=mapping["refused_reason"],
        values=mapping,
    )


@dataclass(frozen=True)
class InvoiceRecord:
    """What the worker stores for one invoice."""

    seq: int
    item: str
    syntax: str | None
    profile: str | None
    summary: dict[str, Any]
    status: str
    reason_code: str | None
    reason_message: str | None
    report: dict[str, Any] | None


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # Called after a transaction that enqueued outbox rows has committed (wakes delivery workers).
        self.after_outbox_commit: list[Callable[[], None]] = []

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self) -> str | None:
        return migrate(self.engine)

    def check_schema(self) -> str:
        return check_schema(self.engine)

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return current_revision(conn)

    def reader(self) -> Connection:
        """A connection for reads only: on SQLite it does not wait behind writers."""
        return self.engine.connect().execution_options(gateway_read_only=True)

    def ping(self) -> bool:
        with self.reader() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            try:
                yield conn
            except BaseException:
                conn.info.pop(OUTBOX_ENQUEUED_FLAG, None)
                raise
            enqueued = conn.info.pop(OUTBOX_ENQUEUED_FLAG, False)
        if enqueued:  # committed: wake the delivery workers (side effects after the commit)
            for hook in self.after_outbox_commit:
                hook()

    # -- intake -----------------------------------------------------------------------------------
    def record_received(
        self,
        *,
        flow_id: str,
        partner: str,
        source: str,
        filename: str,
        size: int,
        sha256: str | None,
        received_at: datetime,
        worker: str,
        refused_reason: str | None = None,
    ) -> str | None:
        """Insert a RECEIVED flow and its event; returns the original's id if this one is a duplicate.

        Idempotent on flow_id (recovery may call it again for a flow already committed).
        """
        values = dict(
            id=flow_id,
            partner=partner,
            source=source,
            filename=filename,
            size=size,
            sha256=sha256,
            received_at=received_at,
            state=FlowState.RECEIVED.value,
            state_changed_at=received_at,
            attempts=0,
            claims=0,
            refused_reason=refused_reason,
        )
        for _ in range(3):
            with self.transaction() as conn:
                existing = conn.execute(
                    select(FlowRow.duplicate_of, FlowRow.id).where(FlowRow.id == flow_id)
                ).first()
                if existing is not None:
                    return str(existing.duplicate_of) if existing.duplicate_of else None
                original = None
                if sha256 is not None:
                    original = conn.execute(
                        select(FlowRow.id).where(
                            FlowRow.partner == partner,
                            FlowRow.sha256 == sha256,
                            FlowRow.duplicate_of.is_(None),
                        )
                    ).scalar()
                try:
                    conn.execute(insert(FlowRow).values(**values, duplicate_of=original))
                except IntegrityError:
                    conn.rollback()
                    continue  # another node inserted the original meanwhile: look again
                reason = f"{source}: {filename} ({size} bytes)"
                if original:
                    reason += f"; same content as flow {original}"
                self._event(
                    conn, flow_id, None, FlowState.RECEIVED, worker, "intake", reason, None, received_at
                )
                return original
        raise RuntimeError(f"could not record flow {flow_id} after repeated conflicts")

    def flow_exists(self, flow_id: str) -> bool:
        with self.reader() as conn:
            return conn.execute(select(FlowRow.id).where(FlowRow.id == flow_id)).first() is not None

    # -- work queue -------------------------------------------------------------------------------
    def claim_next(
        self, worker: str, lease_seconds: float, now: datetime | None = None
    ) -> FlowSnapshot | None:
        """Take one workable flow with a lease; counts the claim (a flow claimed too often crashed us)."""
        now = now or utcnow()
        workable = [s.value for s in WORKABLE_STATES]
        candidate = (
            select(FlowRow.id)
            .where(
                FlowRow.state.in_(workable),
                (FlowRow.next_attempt_at.is_(None)) | (FlowRow.next_attempt_at <= now),
                (FlowRow.lease_expires_at.is_(None)) | (FlowRow.lease_expires_at < now),
            )
            .order_by(FlowRow.received_at, FlowRow.id)
            .limit(1)
        )
        if not self.is_sqlite:
            candidate = candidate.with_for_update(skip_locked=True)
        with self.transaction() as conn:
            flow_id = conn.execute(candidate).scalar()
            if flow_id is None:
                return None
            row = conn.execute(
                update(FlowRow)
                .where(FlowRow.id == flow_id)
                .values(
                    lease_owner=worker,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    claims=FlowRow.claims + 1,
                )
                .returning(*FlowRow.__table__.columns)
            ).first()
            return _snapshot(row) if row else None

    def release_stale_leases(self, now: datetime | None = None, *, all_leases: bool = False) -> int:
        """Free expired leases (or all of them: a single SQLite node starting up owns every lease)."""
        now = now or utcnow()
        stmt = update(FlowRow).where(FlowRow.lease_owner.is_not(None))
        if not all_leases:
            stmt = stmt.where(FlowRow.lease_expires_at < now)
        with self.transaction() as conn:
            return conn.execute(stmt.values(lease_owner=None, lease_expires_at=None)).rowcount

    def advance(
        self,
        flow: FlowSnapshot,
        expected: FlowState,
        target: FlowState,
        *,
        worker: str,
        stage: str,
        reason: str | None = None,
        duration_ms: float | None = None,
        values: dict[str, Any] | None = None,
        invoices: Sequence[InvoiceRecord] = (),
        release: bool = False,
        lease_seconds: float | None = None,
        now: datetime | None = None,
    ) -> bool:
        """One state change: guarded update + event row (+ invoice rows) in one transaction.

        False if the flow is no longer in `expected` under this worker's lease (someone else has it).
        """
        now = now or utcnow()
        with self.transaction() as conn:
            ok = self.advance_in(
                conn, flow, expected, target, worker=worker, stage=stage, reason=reason,
                duration_ms=duration_ms, values=values, invoices=invoices, release=release,
                lease_seconds=lease_seconds, now=now,
            )  # fmt: skip
            if not ok:
                conn.rollback()
        return ok

    def advance_in(
        self,
        conn: Connection,
        flow: FlowSnapshot,
        expected: FlowState,
        target: FlowState,
        *,
        worker: str,
        stage: str,
        reason: str | None = None,
        duration_ms: float | None = None,
        values: dict[str, Any] | None = None,
        invoices: Sequence[InvoiceRecord] = (),
        release: bool = False,
        lease_seconds: float | None = None,
        now: datetime | None = None,
    ) -> bool:
        """`advance` inside the caller's transaction (which may enqueue outbox rows with it).

        False if the guard failed: the caller must then roll its transaction back."""
        now = now or utcnow()
        updates: dict[str, Any] = dict(values or {})
        updates.update(state=target.value, state_changed_at=now)
        if release:
            updates.update(lease_owner=None, lease_expires_at=None)
        elif lease_seconds is not None:
            updates.update(lease_expires_at=now + timedelta(seconds=lease_seconds))  # renew while progressing
        result = conn.execute(
            update(FlowRow)
            .where(FlowRow.id == flow.id, FlowRow.state == expected.value, FlowRow.lease_owner == worker)
            .values(**updates)
        )
        if result.rowcount != 1:
            return False
        self._event(conn, flow.id, expected, target, worker, stage, reason, duration_ms, now)
        for inv in invoices:
            self._insert_invoice(conn, flow.id, inv)
        return True

    def move_unleased(
        self,
        conn: Connection,
        flow_id: str,
        expected: FlowState | Sequence[FlowState],
        target: FlowState,
        *,
        worker: str,
        stage: str,
        reason: str | None,
        values: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> FlowState | None:
        """Guarded move of a flow no worker holds (delivery states, operator moves) in the caller's
        transaction; returns the state it left, or None when the flow is not in `expected` / leased."""
        now = now or utcnow()
        states = [expected] if isinstance(expected, FlowState) else list(expected)
        current = conn.execute(
            select(FlowRow.state).where(
                FlowRow.id == flow_id,
                FlowRow.state.in_([s.value for s in states]),
                FlowRow.lease_owner.is_(None) | (FlowRow.lease_expires_at < now),
            )
        ).scalar()
        if current is None:
            return None
        updates = dict(values or {})
        updates.update(state=target.value, state_changed_at=now, lease_owner=None, lease_expires_at=None)
        done = conn.execute(
            update(FlowRow).where(FlowRow.id == flow_id, FlowRow.state == current).values(**updates)
        ).rowcount
        if done != 1:
            return None
        self._event(conn, flow_id, FlowState(current), target, worker, stage, reason, None, now)
        return FlowState(current)

    def quarantine_or_replay(
        self,
        flow_id: str,
        target: FlowState,
        worker: str,
        reason: str,
        *,
        expected: FlowState | Sequence[FlowState] | None = None,
    ) -> bool:
        """Operator or recovery move of a flow not held by a lease (QUARANTINED ⇄ RECEIVED).

        Guarded: the state is read and changed in one transaction, only from `expected` (any state
        when None) and only when no live lease holds the flow; False when nothing moved."""
        states = [s for s in FlowState] if expected is None else expected
        with self.transaction() as conn:
            moved = self.move_unleased(
                conn, flow_id, states, target, worker=worker, stage="operator", reason=reason,
                values=dict(next_attempt_at=None, claims=0, attempts=0, checkpoint=None),
            )  # fmt: skip
            if moved is None:
                conn.rollback()
        return moved is not None

    @staticmethod
    def _event(
        conn: Connection,
        flow_id: str,
        from_state: FlowState | None,
        to_state: FlowState,
        worker: str,
        stage: str | None,
        reason: str | None,
        duration_ms: float | None,
        at: datetime,
    ) -> None:
        conn.execute(
            insert(FlowEventRow).values(
                flow_id=flow_id,
                at=at,
                from_state=from_state.value if from_state else None,
                to_state=to_state.value,
                worker=worker,
                stage=stage,
                reason=reason,
                duration_ms=duration_ms,
            )
        )

    @staticmethod
    def _insert_invoice(conn: Connection, flow_id: str, inv: InvoiceRecord) -> None:
        s = inv.summary
        conn.execute(
            insert(InvoiceRow).values(
                flow_id=flow_id,
                seq=inv.seq,
                item=inv.item[:512],
                syntax=inv.syntax,
                profile=(inv.profile or None) and inv.profile[:256],
                number=_clip(s.get("number"), 128),
                type_code=_clip(s.get("type_code"), 8),
                issue_date=_clip(s.get("issue_date"), 10),
                currency=_clip(s.get("currency"), 3),
                seller_siret=_clip(s.get("seller_siret"), 20),
                seller_vat_id=_clip(s.get("seller_vat_id"), 32),
                buyer_siret=_clip(s.get("buyer_siret"), 20),
                service_code=_clip(s.get("service_code"), 128),
                engagement_number=_clip(s.get("engagement_number"), 128),
                total_gross=_clip(s.get("total_gross"), 32),
                status=inv.status,
                reason_code=inv.reason_code,
                reason_message=inv.reason_message,
                summary_json=json.dumps(s, ensure_ascii=False),
                report_json=json.dumps(inv.report, ensure_ascii=False) if inv.report is not None else None,
            )
        )

    # -- reading (the pipeline's own needs; monitoring reads live in store/queries.py) ------------------
    def flow_invoices(self, flow_id: str) -> list[dict[str, Any]]:
        stmt = select(InvoiceRow.__table__).where(InvoiceRow.flow_id == flow_id).order_by(InvoiceRow.seq)
        with self.reader() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]


def _clip(value: Any, size: int) -> str | None:
    return None if value is None else str(value)[:size]


def default_worker_name(node_name: str) -> str:
    return f"{node_name or os.uname().nodename}:{os.getpid()}"
