"""`gateway invoices` and `gateway stats`: flow follow-up for operators, like Chorus Pro's "suivi des flux".

Both read the store through gateway.store.queries (the same queries as the JSON API on the metrics
port), print aligned text by default and JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, TextIO

from gateway.cli import add_data_dir, open_store
from gateway.statemachine import PROGRESS_STATES, FlowState
from gateway.store import queries
from gateway.timeparse import parse_since
from gateway.transforms.lifecycle import STATUSES, label

INVOICE_STATUSES = ("accepted", "rejected", "not_validated")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    invoices = subparsers.add_parser("invoices", help="list invoices (newest flow first) with their verdicts")
    add_data_dir(invoices)
    invoices.add_argument("--partner", help="partner id")
    invoices.add_argument(
        "--status",
        type=_invoice_status,
        help="accepted, rejected, not_validated, or a lifecycle status code (e.g. 210: currently Refusée)",
    )
    invoices.add_argument("--number", help="invoice number (exact)")
    invoices.add_argument("--since", type=parse_since, help="24h, 30m, 7d or an ISO date (flow reception)")
    invoices.add_argument("--limit", type=_positive_int, default=50)
    invoices.add_argument("--json", action="store_true")
    invoices.set_defaults(func=cmd_invoices)

    invoice = subparsers.add_parser("invoice", help="one invoice: verdict, summary and lifecycle history")
    add_data_dir(invoice)
    invoice.add_argument(
        "invoice_id", type=_positive_int, help="invoice id (column ID of `gateway invoices`)"
    )
    invoice.add_argument("--json", action="store_true")
    invoice.set_defaults(func=cmd_invoice)

    stats = subparsers.add_parser(
        "stats", help="counts per state, partner, invoice status and rejection reason"
    )
    add_data_dir(stats)
    stats.add_argument(
        "--since", type=parse_since, default="24h", help="period start: 24h (default), 30m, 7d or an ISO date"
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _invoice_status(text: str) -> str:
    value = text.strip().lower()
    if value in INVOICE_STATUSES or value in STATUSES:
        return value
    known = ", ".join(INVOICE_STATUSES) + ", " + " ".join(STATUSES)
    raise argparse.ArgumentTypeError(f"unknown status {text!r}; known: {known}")


def _short_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _cell(value: Any, width: int) -> str:
    text = "-" if value in (None, "") else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _dump(data: Any, out: TextIO) -> None:
    json.dump(queries.jsonable(data), out, indent=2, ensure_ascii=False)
    out.write("\n")


# -- invoices -------------------------------------------------------------------------------------
def cmd_invoices(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = open_store(args.data_dir)
    try:
        rows = queries.list_invoices(
            store,
            partner=args.partner,
            status=args.status,
            number=args.number,
            since=args.since,
            limit=args.limit,
        )
    finally:
        store.close()
    if args.json:
        _dump(rows, out)
        return 0
    out.write(format_invoices(rows))
    return 0


def format_invoices(rows: list[dict[str, Any]]) -> str:
    columns = [
        ("ID", 6, ">"), ("RECEIVED", 19, "<"), ("PARTNER", 12, "<"), ("FLOW", 31, "<"), ("#", 3, ">"),
        ("STATUS", 13, "<"), ("LC", 3, "<"), ("NUMBER", 20, "<"), ("SELLER", 14, "<"), ("TOTAL", 14, ">"),
        ("CUR", 3, "<"),
    ]  # fmt: skip
    lines = [" ".join(f"{title:{align}{width}}" for title, width, align in columns) + "  REASON"]
    for r in rows:
        values = [
            r["id"], _short_time(r["received_at"]), r["partner"], r["flow_id"], r["seq"], r["status"],
            r.get("lifecycle_status"), r["number"], r["seller_siret"] or r["seller_vat_id"], r["total_gross"],
            r["currency"],
        ]  # fmt: skip
        cells = " ".join(
            f"{_cell(v, width):{align}{width}}" for v, (_, width, align) in zip(values, columns, strict=True)
        )
        reason = f"{r['reason_code']}: {r['reason_message'] or ''}" if r["reason_code"] else ""
        lines.append(f"{cells}  {_cell(reason, 100) if reason else ''}".rstrip())
    lines.append(f"({len(rows)} invoice(s))")
    return "\n".join(lines) + "\n"


# -- one invoice ------------------------------------------------------------------------------------
def cmd_invoice(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = open_store(args.data_dir)
    try:
        invoice = queries.get_invoice(store, args.invoice_id)
    finally:
        store.close()
    if invoice is None:
        sys.stderr.write(f"no invoice {args.invoice_id}\n")
        return 1
    if args.json:
        _dump(invoice, out)
        return 0
    out.write(format_invoice(invoice))
    return 0


def format_invoice(invoice: dict[str, Any]) -> str:
    summary = invoice.get("summary") or {}
    current = invoice.get("lifecycle_status")
    lines = [
        f"Invoice {invoice['id']}: {invoice.get('number') or '-'} ({invoice.get('type_code') or '-'}) "
        f"of {invoice.get('issue_date') or '-'}",
        f"  flow       {invoice['flow_id']} from {invoice['partner']}, received {_short_time(invoice['received_at'])}",
        f"  seller     {summary.get('seller_name') or '-'} (SIRET {invoice.get('seller_siret') or '-'})",
        f"  buyer      {summary.get('buyer_name') or '-'} (SIRET {invoice.get('buyer_siret') or '-'})",
        f"  total      {invoice.get('total_gross') or '-'} {invoice.get('currency') or ''}".rstrip(),
        f"  validation {invoice['status']}"
        + (
            f" ({invoice['reason_code']}: {invoice.get('reason_message') or ''})"
            if invoice.get("reason_code")
            else ""
        ),
        f"  lifecycle  {current + ' ' + label(current) if current else 'no status yet'}",
        "",
        f"{'AT':<19} {'CODE':<4} {'LABEL':<24} {'ACTOR':<9} {'PARTNER':<12} {'FLOW':<31} REASON",
    ]
    for s in invoice.get("lifecycle") or []:
        reason = " ".join(x for x in (s.get("reason_code"), s.get("reason_text")) if x)
        lines.append(
            f"{_short_time(s['at']):<19} {s['code']:<4} {_cell(s['label'], 24):<24} {s['actor']:<9} "
            f"{_cell(s.get('partner'), 12):<12} {_cell(s.get('source_flow'), 31):<31} {reason}".rstrip()
        )
    if not invoice.get("lifecycle"):
        lines.append("(no lifecycle status)")
    return "\n".join(lines) + "\n"


# -- stats ----------------------------------------------------------------------------------------
def cmd_stats(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = open_store(args.data_dir)
    try:
        data = queries.stats(store, args.since)
    finally:
        store.close()
    if args.json:
        _dump(data, out)
        return 0
    out.write(format_stats(data))
    return 0


PENDING_STATES = {s.value for s in PROGRESS_STATES} | {FlowState.FAILED.value}


def format_stats(data: dict[str, Any]) -> str:
    flows, invoices, reasons = data["flows"], data["invoices"], data["rejection_reasons"]
    lines = [
        f"Flows received from {_short_time(data['since'])} to {_short_time(data['until'])} UTC: {flows['total']}",
        "",
        f"{'STATE':<14} {'FLOWS':>7}",
    ]
    lines += [f"{state:<14} {n:>7}" for state, n in flows["by_state"].items()]

    lines += ["", "Per partner:"]
    header = (
        f"{'PARTNER':<20} {'FLOWS':>7} {'ACKED':>7} {'REJECTED':>8} {'PENDING':>7} {'QUARANT.':>8}"
        f" {'INVOICES':>8} {'ACCEPTED':>8} {'REJECTED':>8}"
    )
    lines.append(header)
    partners = sorted(set(flows["by_partner"]) | set(invoices["by_partner"]))
    for partner in partners:
        f = flows["by_partner"].get(partner, {"total": 0, "by_state": {}})
        by_state = f["by_state"]
        inv = invoices["by_partner"].get(partner, {"total": 0, "by_status": {}})
        pending = sum(n for state, n in by_state.items() if state in PENDING_STATES)
        lines.append(
            f"{_cell(partner, 20):<20} {f['total']:>7} {by_state.get('ACKNOWLEDGED', 0):>7}"
            f" {by_state.get('REJECTED', 0):>8} {pending:>7} {by_state.get('QUARANTINED', 0):>8}"
            f" {inv['total']:>8} {inv['by_status'].get('accepted', 0):>8} {inv['by_status'].get('rejected', 0):>8}"
        )
    if not partners:
        lines.append("(no flow in this period)")

    lines += ["", f"Invoices: {invoices['total']}"]
    lines += [f"  {status:<16} {n:>7}" for status, n in invoices["by_status"].items()]

    lines += ["", "Rejection reasons:"]
    if not reasons["flows"] and not reasons["invoices"]:
        lines.append("  (none)")
    for level in ("flows", "invoices"):
        for code, n in reasons[level].items():
            lines.append(f"  {level[:-1]:<8} {code:<22} {n:>7}")
    return "\n".join(lines) + "\n"
