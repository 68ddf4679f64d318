"""`gateway deliveries` (the outbox: acks, deliveries, their attempts) and `gateway resend INVOICE_ID`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway.cli import add_data_dir, open_store
from gateway.statemachine import FlowState
from gateway.store.db import Store
from gateway.store.models import OutboxRow
from gateway.store.outbox import KINDS, STATES, resend

_LIST_COLUMNS = [c for c in OutboxRow.__table__.columns if c.name != "payload"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deliveries = sub.add_parser("deliveries", help="list outbox rows: deliveries and acks, newest first")
    add_data_dir(deliveries)
    deliveries.add_argument("--state", choices=STATES)
    deliveries.add_argument("--sink", help="a sink id: partner:<id>, or the id of a [sinks.<id>] section")
    deliveries.add_argument("--kind", choices=sorted(KINDS), help="only this kind (default: all)")
    deliveries.add_argument("--flow", help="only the rows of this flow")
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.add_argument("--json", action="store_true")
    deliveries.set_defaults(func=cmd_deliveries)

    again = sub.add_parser("resend", help="deliver an invoice again (a new attempt, under the same name)")
    add_data_dir(again)
    again.add_argument("invoice_id", type=int, help="the invoice id (`gateway deliveries` / `gateway flow`)")
    again.set_defaults(func=cmd_resend)


def list_rows(
    store: Store,
    *,
    state: str | None = None,
    sink: str | None = None,
    kind: str | None = None,
    flow_id: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    stmt = select(*_LIST_COLUMNS).order_by(OutboxRow.id.desc()).limit(limit)
    if state:
        stmt = stmt.where(OutboxRow.state == state)
    if sink:
        stmt = stmt.where(OutboxRow.sink == sink)
    if kind:
        stmt = stmt.where(OutboxRow.kind == kind)
    if flow_id:
        stmt = stmt.where(OutboxRow.flow_id == flow_id)
    with store.reader() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    for row in rows:
        row["meta"] = json.loads(row.pop("meta_json") or "{}")
    return rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def cmd_deliveries(args: argparse.Namespace) -> int:
    store = open_store(args.data_dir)
    rows = list_rows(
        store, state=args.state, sink=args.sink, kind=args.kind, flow_id=args.flow, limit=args.limit
    )
    if args.json:
        print(json.dumps(_jsonable(rows), indent=2, ensure_ascii=False))
        return 0
    print(
        f"{'ID':>6} {'KIND':<8} {'STATE':<7} {'TRY':>3} {'INVOICE':>7} {'SINK':<20} {'FLOW':<31} NAME / LAST ERROR"
    )
    for r in rows:
        error = f"  [{(r['last_error'] or '').splitlines()[0][:80]}]" if r["last_error"] else ""
        invoice = str(r["invoice_id"]) if r["invoice_id"] is not None else "-"
        print(
            f"{r['id']:>6} {r['kind']:<8} {r['state']:<7} {r['attempts']:>3} {invoice:>7} {r['sink'][:20]:<20} "
            f"{(r['flow_id'] or '-'):<31} {r['remote_name']}{error}"
        )
    print(f"({len(rows)} row(s))")
    return 0


def cmd_resend(args: argparse.Namespace) -> int:
    store = open_store(args.data_dir)
    with store.transaction() as conn:
        row = conn.execute(
            select(OutboxRow.id, OutboxRow.state, OutboxRow.flow_id, OutboxRow.remote_name, OutboxRow.sink)
            .where(OutboxRow.invoice_id == args.invoice_id, OutboxRow.kind == "delivery")
            .order_by(OutboxRow.id.desc())
            .limit(1)
        ).first()
        if row is None:
            print(f"no delivery for invoice {args.invoice_id}", file=sys.stderr)
            return 1
        if not resend(conn, row.id):
            print(
                f"the delivery of invoice {args.invoice_id} is pending already ({row.remote_name})",
                file=sys.stderr,
            )
            return 1
        if row.flow_id is not None:  # a flow waiting for an operator goes back to its deliveries
            store.move_unleased(
                conn, row.flow_id, FlowState.UNDELIVERED, FlowState.ROUTED, worker="operator", stage="resend",
                reason=f"resend of {row.remote_name} to {row.sink}",
            )  # fmt: skip
    print(
        f"invoice {args.invoice_id}: {row.remote_name} to {row.sink} is pending again; a running gateway sends it"
    )
    return 0
