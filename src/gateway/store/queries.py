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


# =================================================================================================
# --- console: what the operators' web console reads (src/gateway/console/) ---
# Tables other areas add in parallel (`invoice_statuses`, `outbox`, the directory's `structures`)
# are found by name at read time and shown column by column, so the console works with or without them.
# =================================================================================================
INVOICE_STATUSES_TABLE = "invoice_statuses"
DIRECTORY_TABLES = ("directory_entries", "structures", "directory")
CONSOLE_AUDIT_TABLE = "operator_audit"


def has_table(conn: Connection, name: str) -> bool:
    return bool(inspect(conn).has_table(name))


def _reflect(conn: Connection, name: str) -> Any:
    from sqlalchemy import MetaData, Table

    return Table(name, MetaData(), autoload_with=conn)


def optional_tables(store: Store) -> dict[str, bool]:
    """Which optional tables this database has (the console hides what they would feed)."""
    with read_connection(store) as conn:
        inspector = inspect(conn)
        return {
            "outbox": inspector.has_table(OUTBOX_TABLE),
            "invoice_statuses": inspector.has_table(INVOICE_STATUSES_TABLE),
            "directory": any(inspector.has_table(t) for t in DIRECTORY_TABLES),
        }


def console_flows(
    store: Store,
    *,
    partner: str | None = None,
    state: FlowState | None = None,
    reason: str | None = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Flows newest first, filtered by partner, state, reason code and a reception period [from, to)."""
    stmt = select(FlowRow.__table__).order_by(FlowRow.received_at.desc(), FlowRow.id.desc()).limit(limit)
    if partner:
        stmt = stmt.where(FlowRow.partner == partner)
    if state is not None:
        stmt = stmt.where(FlowRow.state == state.value)
    if reason:
        stmt = stmt.where(FlowRow.reason_code == reason)
    if received_from is not None:
        stmt = stmt.where(FlowRow.received_at >= received_from)
    if received_to is not None:
        stmt = stmt.where(FlowRow.received_at < received_to)
    with read_connection(store) as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def backlog(store: Store) -> dict[str, int]:
    """Flows still to be worked (progress states and FAILED) and flows parked in quarantine."""
    workable = [s.value for s in WORKABLE_STATES]
    with read_connection(store) as conn:
        pending = conn.execute(
            select(func.count()).select_from(FlowRow).where(FlowRow.state.in_(workable))
        ).scalar()
        quarantined = conn.execute(
            select(func.count()).select_from(FlowRow).where(FlowRow.state == FlowState.QUARANTINED.value)
        ).scalar()
    return {"pending": int(pending or 0), "quarantined": int(quarantined or 0)}


def flow_filter_values(store: Store) -> dict[str, list[str]]:
    """Partners and reason codes seen in flows (the choices of the flows page's filters)."""
    with read_connection(store) as conn:
        partners = conn.execute(select(FlowRow.partner).distinct().order_by(FlowRow.partner)).scalars()
        reasons = conn.execute(
            select(FlowRow.reason_code)
            .where(FlowRow.reason_code.is_not(None))
            .distinct()
            .order_by(FlowRow.reason_code)
        ).scalars()
        return {"partners": [str(p) for p in partners], "reasons": [str(r) for r in reasons]}


def console_invoices(
    store: Store,
    *,
    status: str | None = None,
    recipient: str | None = None,
    number: str | None = None,
    partner: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Invoices newest first; `recipient` matches the buyer SIRET or part of it, `number` part of the number;
    `status` is accepted | rejected | not_validated, or a lifecycle code (`213`) once invoices carry one."""
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
    lifecycle = InvoiceRow.__table__.c.get("lifecycle_status")  # the lifecycle area's column, once it exists
    if status and status.strip().isdigit() and lifecycle is not None:
        stmt = stmt.where(lifecycle == status.strip())
    elif status:
        stmt = stmt.where(InvoiceRow.status == status.strip().lower())
    if recipient:
        stmt = stmt.where(InvoiceRow.buyer_siret.contains(recipient.strip(), autoescape=True))
    if number:
        stmt = stmt.where(InvoiceRow.number.contains(number.strip(), autoescape=True))
    if partner:
        stmt = stmt.where(FlowRow.partner == partner)
    with read_connection(store) as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def _optional_rows(
    conn: Connection, name: str, where: dict[str, Any], limit: int = 500
) -> list[dict[str, Any]]:
    """Rows of an optional table matching `where` on the columns it has; [] without the table."""
    if not has_table(conn, name):
        return []
    tbl = _reflect(conn, name)
    conditions = [tbl.c[key] == value for key, value in where.items() if key in tbl.c]
    if len(conditions) != len(where):
        return []
    order = [tbl.c[k] for k in ("at", "created_at", "id") if k in tbl.c]
    stmt = select(tbl).where(*conditions).order_by(*order).limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def invoice_lifecycle(store: Store, invoice_id: int) -> list[dict[str, Any]]:
    """The invoice's recorded lifecycle statuses, oldest first ([] while there is no such table)."""
    with read_connection(store) as conn:
        return _optional_rows(conn, INVOICE_STATUSES_TABLE, {"invoice_id": invoice_id})


def deliveries(
    store: Store, *, invoice_id: int | None = None, flow_id: str | None = None
) -> list[dict[str, Any]]:
    """Outbox rows of one invoice or one flow (acks, deliveries, webhooks …); [] without an outbox."""
    where: dict[str, Any] = {"invoice_id": invoice_id} if invoice_id is not None else {"flow_id": flow_id}
    with read_connection(store) as conn:
        rows = _optional_rows(conn, OUTBOX_TABLE, where)
    for row in rows:
        row.pop("payload", None)  # payloads are never shown inline
    return rows


def outbox_item(store: Store, item_id: int) -> dict[str, Any] | None:
    with read_connection(store) as conn:
        rows = _optional_rows(conn, OUTBOX_TABLE, {"id": item_id}, limit=1)
    return rows[0] if rows else None


def rejections(
    store: Store, since: datetime, until: datetime | None = None, *, partner: str | None = None
) -> dict[str, Any]:
    """Rejections over a period: rejected flows per reason code, rejected invoices per reason code and
    per rule id (how many invoices each rule rejected, with one message as an example), per partner.
    """
    until = until or utcnow()
    period = [FlowRow.received_at >= since, FlowRow.received_at < until]
    if partner:
        period.append(FlowRow.partner == partner)
    with read_connection(store) as conn:
        flow_reasons = conn.execute(
            select(FlowRow.partner, FlowRow.reason_code, func.count())
            .where(*period, FlowRow.state == FlowState.REJECTED.value, FlowRow.reason_code.is_not(None))
            .group_by(FlowRow.partner, FlowRow.reason_code)
        ).all()
        rejected = conn.execute(
            select(FlowRow.partner, InvoiceRow.reason_code, InvoiceRow.report_json)
            .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
            .where(*period, InvoiceRow.status == "rejected")
        ).all()
    by_reason: dict[str, int] = {}
    for _partner, code, n in flow_reasons:
        by_reason[str(code)] = by_reason.get(str(code), 0) + int(n)
    invoice_reasons: dict[str, int] = {}
    rules: dict[tuple[str, str], dict[str, Any]] = {}
    for row_partner, code, report_json in rejected:
        key_code = code or "-"
        invoice_reasons[key_code] = invoice_reasons.get(key_code, 0) + 1
        report = _parse_json(report_json) or {}
        seen: set[str] = set()
        for finding in report.get("findings", []) if isinstance(report, dict) else []:
            if finding.get("severity") != "fatal" or finding.get("rule_id") in seen:
                continue
            rule_id = str(finding.get("rule_id"))
            seen.add(rule_id)
            entry = rules.setdefault(
                (rule_id, row_partner),
                {"rule_id": rule_id, "partner": row_partner, "invoices": 0,
                 "pack": finding.get("pack") or "", "example": finding.get("message") or ""},
            )  # fmt: skip
            entry["invoices"] += 1
    by_rule: dict[str, dict[str, Any]] = {}
    for entry in rules.values():
        total = by_rule.setdefault(
            entry["rule_id"],
            {"rule_id": entry["rule_id"], "invoices": 0, "pack": entry["pack"], "example": entry["example"],
             "partners": {}},
        )  # fmt: skip
        total["invoices"] += entry["invoices"]
        total["partners"][entry["partner"]] = entry["invoices"]
    return {
        "since": since,
        "until": until,
        "partner": partner,
        "flows_by_reason": sorted(by_reason.items(), key=lambda item: (-item[1], item[0])),
        "invoices_by_reason": sorted(invoice_reasons.items(), key=lambda item: (-item[1], item[0])),
        "invoices_rejected": len(rejected),
        "by_rule": sorted(by_rule.values(), key=lambda item: (-item["invoices"], item["rule_id"])),
    }


def partner_activity(store: Store) -> dict[str, dict[str, Any]]:
    """Per partner seen in flows: flow count, last reception, flows per state."""
    with read_connection(store) as conn:
        rows = conn.execute(
            select(FlowRow.partner, FlowRow.state, func.count(), func.max(FlowRow.received_at)).group_by(
                FlowRow.partner, FlowRow.state
            )
        ).all()
    out: dict[str, dict[str, Any]] = {}
    for partner, state, n, last in rows:
        if isinstance(last, str):  # an aggregate over a UTCDateTime column may come back untyped
            last = datetime.fromisoformat(last)
        entry = out.setdefault(partner, {"flows": 0, "last_received_at": None, "by_state": {}})
        entry["flows"] += int(n)
        entry["by_state"][state] = int(n)
        if last is not None and (entry["last_received_at"] is None or last > entry["last_received_at"]):
            entry["last_received_at"] = last
    return out


def directory_entries(store: Store, limit: int = 500) -> dict[str, Any]:
    """The first rows of the routing directory (whichever directory table exists), column by column."""
    with read_connection(store) as conn:
        for name in DIRECTORY_TABLES:
            if has_table(conn, name):
                tbl = _reflect(conn, name)
                rows = [dict(r._mapping) for r in conn.execute(select(tbl).limit(limit))]
                total = conn.execute(select(func.count()).select_from(tbl)).scalar()
                return {
                    "table": name,
                    "columns": [c.name for c in tbl.c],
                    "rows": rows,
                    "total": int(total or 0),
                }
    return {"table": None, "columns": [], "rows": [], "total": 0}


def operator_audit(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """The latest console actions, newest first ([] before the table exists)."""
    with read_connection(store) as conn:
        if not has_table(conn, CONSOLE_AUDIT_TABLE):
            return []
        tbl = _reflect(conn, CONSOLE_AUDIT_TABLE)
        stmt = select(tbl).order_by(tbl.c.id.desc()).limit(limit)
        return [dict(r._mapping) for r in conn.execute(stmt)]


def stored_ack(store: Store, flow_id: str, name: str) -> dict[str, Any] | None:
    """The acknowledgement of record as the outbox keeps it (latest `ack` row of the flow under that name):
    `payload` (inline bytes) or `payload_sha256` (a blob); None without an outbox or such a row."""
    with read_connection(store) as conn:
        if not has_table(conn, OUTBOX_TABLE):
            return None
        outbox = _reflect(conn, OUTBOX_TABLE)
        if not {"kind", "flow_id", "remote_name", "payload", "payload_sha256"} <= set(outbox.c.keys()):
            return None
        row = conn.execute(
            select(outbox.c.payload, outbox.c.payload_sha256)
            .where(outbox.c.kind == "ack", outbox.c.flow_id == flow_id, outbox.c.remote_name == name)
            .order_by(outbox.c.id.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    return {
        "payload": bytes(row.payload) if row.payload is not None else None,
        "payload_sha256": row.payload_sha256,
    }
