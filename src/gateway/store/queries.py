"""Read-only queries for operators: flow and invoice lists, one flow's record, counts over a period.

Shared by the JSON API on the metrics port (telemetry/http.py) and the CLI (`gateway invoices`,
`gateway stats`), so both show the same numbers. Nothing here writes. Every function takes a `Store`
and returns plain data (dicts, lists, str, int, datetime); `jsonable()` makes it JSON-ready.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import column, func, inspect, select, table
from sqlalchemy.engine import Connection

from gateway.statemachine import WORKABLE_STATES, FlowState
from gateway.store.db import Store, utcnow
from gateway.store.lifecycle import status_history
from gateway.store.models import FlowEventRow, FlowRow, InvoiceRow

# Invoice columns shown in lists (the JSON summary and validation report only in one invoice's view).
_INVOICE_LIST_COLUMNS = [
    c for c in InvoiceRow.__table__.columns if c.name not in ("summary_json", "report_json")
]
OUTBOX_TABLE = "outbox"


@contextmanager
def read_connection(store: Store) -> Iterator[Connection]:
    """A connection for reads only.

    It carries the execution option `gateway_read_only`, so the store's SQLite `begin` hook can open a
    plain (deferred) transaction instead of `BEGIN IMMEDIATE` for it; nothing here ever writes.
    """
    with store.reader() as conn:
        yield conn


def jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601 strings, recursively through dicts and lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _parse_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}


def _invoice_with_documents(row: dict[str, Any]) -> dict[str, Any]:
    """An invoice row with its stored JSON columns parsed into `summary` and `report`."""
    row = dict(row)
    row["summary"] = _parse_json(row.pop("summary_json", None)) or {}
    row["report"] = _parse_json(row.pop("report_json", None))
    return row


# -- flows ----------------------------------------------------------------------------------------
def parse_state(text: str) -> FlowState:
    """A flow state name in any case; ValueError naming the known states otherwise."""
    try:
        return FlowState(text.strip().upper())
    except ValueError:
        known = ", ".join(s.value for s in FlowState)
        raise ValueError(f"unknown state {text!r}; known: {known}") from None


def list_flows(
    store: Store,
    *,
    partner: str | None = None,
    state: FlowState | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Flows, newest first."""
    stmt = select(FlowRow.__table__).order_by(FlowRow.received_at.desc(), FlowRow.id.desc()).limit(limit)
    if partner:
        stmt = stmt.where(FlowRow.partner == partner)
    if state is not None:
        stmt = stmt.where(FlowRow.state == state.value)
    if since is not None:
        stmt = stmt.where(FlowRow.received_at >= since)
    with read_connection(store) as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def get_flow_detail(store: Store, flow_id: str) -> dict[str, Any] | None:
    """One flow with its whole history and its invoices (summary and report parsed); None if unknown."""
    with read_connection(store) as conn:
        row = conn.execute(select(FlowRow.__table__).where(FlowRow.id == flow_id)).first()
        if row is None:
            return None
        events = conn.execute(
            select(FlowEventRow.__table__).where(FlowEventRow.flow_id == flow_id).order_by(FlowEventRow.id)
        )
        invoices = conn.execute(
            select(InvoiceRow.__table__).where(InvoiceRow.flow_id == flow_id).order_by(InvoiceRow.seq)
        )
        return {
            "flow": dict(row._mapping),
            "events": [dict(e._mapping) for e in events],
            "invoices": [_invoice_with_documents(dict(i._mapping)) for i in invoices],
        }


# -- invoices -------------------------------------------------------------------------------------
def list_invoices(
    store: Store,
    *,
    partner: str | None = None,
    status: str | None = None,
    number: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Invoices with their flow's partner, reception time, state and file name; newest flow first.

    `status` is accepted | rejected | not_validated (any case), or a lifecycle status code (`210`: the
    invoices whose current status is Refusée); `number` is matched exactly; `since` applies to the
    flow's reception time.
    """
    stmt = (
        select(
            *_INVOICE_LIST_COLUMNS,
            FlowRow.partner,
            FlowRow.received_at,
            FlowRow.state.label("flow_state"),
            FlowRow.filename,
        )
        .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
        .order_by(FlowRow.received_at.desc(), InvoiceRow.flow_id.desc(), InvoiceRow.seq)
        .limit(limit)
    )
    if partner:
        stmt = stmt.where(FlowRow.partner == partner)
    if status and status.strip().isdigit():
        stmt = stmt.where(InvoiceRow.lifecycle_status == status.strip())
    elif status:
        stmt = stmt.where(InvoiceRow.status == status.strip().lower())
    if number:
        stmt = stmt.where(InvoiceRow.number == number)
    if since is not None:
        stmt = stmt.where(FlowRow.received_at >= since)
    with read_connection(store) as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def get_invoice(store: Store, invoice_id: int) -> dict[str, Any] | None:
    """One invoice row with its flow's partner and state, summary and report parsed; None if unknown.

    `lifecycle` is its status history, oldest first (issue 18): code, label, at, actor, partner,
    reason_code, reason_text, source_flow, details.
    """
    stmt = (
        select(InvoiceRow.__table__, FlowRow.partner, FlowRow.received_at, FlowRow.state.label("flow_state"))
        .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
        .where(InvoiceRow.id == invoice_id)
    )
    with read_connection(store) as conn:
        row = conn.execute(stmt).first()
        history = status_history(conn, invoice_id) if row else []
    if row is None:
        return None
    invoice = _invoice_with_documents(dict(row._mapping))
    invoice["lifecycle"] = history
    return invoice


# -- counts ---------------------------------------------------------------------------------------
def stats(store: Store, since: datetime, until: datetime | None = None) -> dict[str, Any]:
    """Counts over flows received since `since` (like Chorus Pro's "suivi des flux").

    Flows per state (every state, zeros included) and per partner, invoices per status and per
    partner, and the reason codes of rejected flows and invoices.
    """
    until = until or utcnow()
    period = (FlowRow.received_at >= since) & (FlowRow.received_at <= until)
    with read_connection(store) as conn:
        flow_counts = conn.execute(
            select(FlowRow.partner, FlowRow.state, func.count())
            .where(period)
            .group_by(FlowRow.partner, FlowRow.state)
        ).all()
        flow_reasons = conn.execute(
            select(FlowRow.reason_code, func.count())
            .where(period, FlowRow.reason_code.is_not(None))
            .group_by(FlowRow.reason_code)
        ).all()
        invoice_counts = conn.execute(
            select(FlowRow.partner, InvoiceRow.status, func.count())
            .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
            .where(period)
            .group_by(FlowRow.partner, InvoiceRow.status)
        ).all()
        invoice_reasons = conn.execute(
            select(InvoiceRow.reason_code, func.count())
            .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
            .where(period, InvoiceRow.reason_code.is_not(None))
            .group_by(InvoiceRow.reason_code)
        ).all()

    by_state = {s.value: 0 for s in FlowState}
    flows_by_partner: dict[str, dict[str, Any]] = {}
    for partner, state, n in flow_counts:
        by_state[state] = by_state.get(state, 0) + n
        entry = flows_by_partner.setdefault(partner, {"total": 0, "by_state": {}})
        entry["total"] += n
        entry["by_state"][state] = entry["by_state"].get(state, 0) + n
    by_status: dict[str, int] = {}
    invoices_by_partner: dict[str, dict[str, Any]] = {}
    for partner, status, n in invoice_counts:
        by_status[status] = by_status.get(status, 0) + n
        entry = invoices_by_partner.setdefault(partner, {"total": 0, "by_status": {}})
        entry["total"] += n
        entry["by_status"][status] = entry["by_status"].get(status, 0) + n
    return {
        "since": since,
        "until": until,
        "flows": {
            "total": sum(by_state.values()),
            "by_state": by_state,
            "by_partner": dict(sorted(flows_by_partner.items())),
        },
        "invoices": {
            "total": sum(by_status.values()),
            "by_status": dict(sorted(by_status.items())),
            "by_partner": dict(sorted(invoices_by_partner.items())),
        },
        "rejection_reasons": {
            "flows": dict(sorted(flow_reasons, key=lambda item: (-item[1], item[0]))),
            "invoices": dict(sorted(invoice_reasons, key=lambda item: (-item[1], item[0]))),
        },
    }


# -- gauges read at scrape time -------------------------------------------------------------------
def gauge_snapshot(store: Store, now: datetime | None = None) -> dict[str, Any]:
    """What the Prometheus collector exposes, read in one connection.

    `flows_by_state` (every state, zeros included), `oldest_pending_age_seconds` (oldest flow in a
    workable state: progress states and FAILED; 0 when none), `quarantined`, `outbox_pending` (rows
    of an `outbox` table in state `pending`; 0 while no such table exists).
    """
    now = now or utcnow()
    pending_states = [s.value for s in WORKABLE_STATES]
    with read_connection(store) as conn:
        counts = dict(conn.execute(select(FlowRow.state, func.count()).group_by(FlowRow.state)).all())
        oldest = conn.execute(
            select(func.min(FlowRow.received_at)).where(FlowRow.state.in_(pending_states))
        ).scalar()
        outbox = _outbox_pending(conn)
    by_state = {s.value: int(counts.get(s.value, 0)) for s in FlowState}
    if isinstance(oldest, str):  # an aggregate over a UTCDateTime column may come back untyped
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return {
        "flows_by_state": by_state,
        "oldest_pending_age_seconds": max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        "quarantined": by_state[FlowState.QUARANTINED.value],
        "outbox_pending": outbox,
    }


def _outbox_pending(conn: Connection) -> int:
    inspector = inspect(conn)
    if not inspector.has_table(OUTBOX_TABLE):
        return 0
    has_state = any(c["name"] == "state" for c in inspector.get_columns(OUTBOX_TABLE))
    outbox = table(OUTBOX_TABLE, column("state")) if has_state else table(OUTBOX_TABLE)
    stmt = select(func.count()).select_from(outbox)
    if has_state:
        stmt = stmt.where(outbox.c.state == "pending")
    return int(conn.execute(stmt).scalar() or 0)
