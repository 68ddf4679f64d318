"""Invoice lifecycle in the store (issue 18, shared interface 4): status history and current status.

`record_status` is called INSIDE an open transaction (`with store.transaction() as conn:`), so a status
commits together with the decision that made it (validation, delivery, an incoming status flow). It
judges the change with the pure `transition()` of gateway.transforms.lifecycle and raises `StatusRefused`
(nothing written) when the change is not allowed. On PostgreSQL the invoice row is locked (`FOR UPDATE`)
so two concurrent changes of one invoice are judged one after the other; SQLite writers are serialised
by `BEGIN IMMEDIATE` already.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from gateway.errors import GatewayError
from gateway.store.db import utcnow
from gateway.store.models import FlowRow, InvoiceRow, InvoiceStatusRow, LifecycleItemRow
from gateway.transforms.lifecycle import LC_ACCESS_DENIED, LC_RULE_ERROR, STATUSES, Actor, label, transition
from gateway.transforms.lifecycle_in import StatusLine


class StatusRefused(GatewayError):
    """A status change the lifecycle does not allow; `reason_code` is an AFNOR InvoiceLC* code."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class RecordedStatus:
    id: int
    invoice_id: int
    code: str
    label: str
    previous: str | None
    at: datetime
    actor: str
    partner: str | None
    reason_code: str | None
    reason_text: str | None
    source_flow: str | None
    details: dict[str, Any] | None


def record_status(
    conn: Connection,
    invoice_id: int,
    code: str,
    *,
    actor: Actor | str,
    reason_code: str | None = None,
    reason_text: str | None = None,
    source_flow: str | None = None,
    at: datetime | None = None,
    partner: str | None = None,
    b2g: bool = False,
    details: dict[str, Any] | None = None,
) -> RecordedStatus:
    """Record `code` on the invoice, or raise StatusRefused (nothing written)."""
    actor = Actor(actor)
    current_row = conn.execute(
        select(InvoiceRow.lifecycle_status).where(InvoiceRow.id == invoice_id).with_for_update()
    ).first()
    if current_row is None:
        raise StatusRefused(LC_ACCESS_DENIED, f"invoice {invoice_id} is unknown")
    current: str | None = current_row[0]
    verdict = transition(current, code, actor, reason_code, b2g=b2g)
    if verdict.refusal is not None:
        raise StatusRefused(verdict.refusal, verdict.message)
    now = utcnow()
    at = at or now
    text = reason_text[:1000] if reason_text else None
    status_id = conn.execute(
        insert(InvoiceStatusRow)
        .values(
            invoice_id=invoice_id,
            code=code,
            label=label(code),
            at=at,
            recorded_at=now,
            actor=actor.value,
            partner=partner,
            reason_code=reason_code,
            reason_text=text,
            source_flow=source_flow,
            details_json=json.dumps(details, ensure_ascii=False) if details else None,
        )
        .returning(InvoiceStatusRow.id)
    ).scalar_one()
    conn.execute(
        update(InvoiceRow).where(InvoiceRow.id == invoice_id).values(lifecycle_status=code, lifecycle_at=at)
    )
    return RecordedStatus(
        status_id, invoice_id, code, label(code), current, at, actor.value, partner,
        reason_code, text, source_flow, details,
    )  # fmt: skip


# chorus-reference.md §3.2: a platform rejection is 213 with one of its reasons; an item that is not even
# readable (IRR_*) is 501 Irrecevable. Anything else the gateway rejects for is reported as REJ_SEMAN.
_REJECTION_213 = frozenset(STATUSES["213"].allowed_reasons())
_REJECTION_501 = frozenset(STATUSES["501"].allowed_reasons())


def record_validation_statuses(
    conn: Connection, flow_id: str, *, at: datetime | None = None
) -> list[RecordedStatus]:
    """The gateway's first status for each invoice of a flow just validated (interface 4).

    Accepted → 200 Déposée; rejected → 213 Rejetée with its reason (REJ_SEMAN, DEST_INC, DOUBLON,
    REJ_CONT_B2G...), 200 then 221 Erreur de routage for ROUTAGE_ERR, or 501 Irrecevable for an
    unreadable item (IRR_*). Invoices that already have a status are left alone
    (a retried step), so calling it twice records nothing more.
    """
    rows = conn.execute(
        select(InvoiceRow.id, InvoiceRow.status, InvoiceRow.reason_code, InvoiceRow.reason_message)
        .where(InvoiceRow.flow_id == flow_id, InvoiceRow.lifecycle_status.is_(None))
        .order_by(InvoiceRow.seq)
    ).all()
    recorded = []
    for invoice_id, status, reason, message in rows:
        steps: list[tuple[str, str | None]]
        if status == "accepted":
            steps = [("200", None)]
        elif reason == "ROUTAGE_ERR":  # deposited, then its routing code did not match (status 221)
            steps = [("200", None), ("221", reason)]
        elif reason in _REJECTION_501:
            steps = [("501", reason)]
        else:
            steps = [("213", reason if reason in _REJECTION_213 else "REJ_SEMAN")]
        for code, reason_code in steps:
            recorded.append(
                record_status(
                    conn,
                    invoice_id,
                    code,
                    actor=Actor.PLATFORM,
                    reason_code=reason_code,
                    reason_text=message if reason_code else None,
                    source_flow=flow_id,
                    at=at,
                )  # fmt: skip
            )
    return recorded


# -- readers ----------------------------------------------------------------------------------------
def current_status(conn: Connection, invoice_id: int) -> str | None:
    return conn.execute(select(InvoiceRow.lifecycle_status).where(InvoiceRow.id == invoice_id)).scalar()


def status_history(conn: Connection, invoice_id: int) -> list[dict[str, Any]]:
    """Every status of one invoice, oldest first (`details` parsed)."""
    rows = conn.execute(
        select(InvoiceStatusRow.__table__)
        .where(InvoiceStatusRow.invoice_id == invoice_id)
        .order_by(InvoiceStatusRow.id)
    )
    out = []
    for row in rows:
        item = dict(row._mapping)
        details = item.pop("details_json", None)
        item["details"] = json.loads(details) if details else None
        out.append(item)
    return out


def find_invoice(conn: Connection, number: str, seller_id: str) -> dict[str, Any] | None:
    """The invoice a status line names: its number (BT-1) and its seller's SIRET, or SIREN (9 digits).

    The row comes with `partner` (the partner that sent the invoice). When several invoices match (a
    number sent again after a rejection), the newest one is taken.
    """
    rows = conn.execute(
        select(InvoiceRow.__table__, FlowRow.partner)
        .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
        .where(InvoiceRow.number == number)
        .order_by(InvoiceRow.id.desc())
    )
    for row in rows:
        mapping = dict(row._mapping)
        siret = mapping.get("seller_siret") or ""
        summary = json.loads(mapping.get("summary_json") or "{}")
        siren = summary.get("seller_siren") or (siret[:9] if len(siret) == 14 else "")
        if seller_id == siret or (len(seller_id) == 9 and seller_id == siren):
            return mapping
        if len(seller_id) == 14 and not siret and siren and seller_id[:9] == siren:
            return mapping
    return None


@dataclass(frozen=True)
class LifecycleItem:
    """What became of one line of a lifecycle flow."""

    seq: int
    item: str
    code: str | None
    invoice_id: int | None
    status: str  # accepted | rejected
    reason_code: str | None
    reason_message: str | None
    summary: dict[str, Any]
    report: dict[str, Any] | None = None


def record_item(conn: Connection, flow_id: str, item: LifecycleItem) -> None:
    conn.execute(
        insert(LifecycleItemRow).values(
            flow_id=flow_id,
            seq=item.seq,
            item=item.item[:512],
            code=(item.code or None) and item.code[:8],
            invoice_id=item.invoice_id,
            status=item.status,
            reason_code=item.reason_code,
            reason_message=item.reason_message,
            summary_json=json.dumps(item.summary, ensure_ascii=False),
            report_json=json.dumps(item.report, ensure_ascii=False) if item.report is not None else None,
        )
    )


def flow_items(conn: Connection, flow_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(LifecycleItemRow.__table__)
        .where(LifecycleItemRow.flow_id == flow_id)
        .order_by(LifecycleItemRow.seq)
    )
    return [dict(r._mapping) for r in rows]


# -- applying an incoming lifecycle flow ------------------------------------------------------------
ACCEPTED = "accepted"
REJECTED = "rejected"
OnRecorded = Callable[[Connection, RecordedStatus, dict[str, Any]], None]
RecipientOf = Callable[[Connection, dict[str, Any]], str | None]


def apply_status_lines(
    conn: Connection,
    *,
    flow_id: str,
    partner: str,
    lines: Sequence[StatusLine],
    refusal: tuple[str, str] | None = None,
    report: dict[str, Any] | None = None,
    recipient_of: RecipientOf | None = None,
    on_recorded: OnRecorded | None = None,
) -> list[LifecycleItem]:
    """Apply the lines of one lifecycle flow sent by `partner`, in the caller's transaction.

    Each line becomes one `lifecycle_items` row: `accepted` (its status recorded) or `rejected` with an
    InvoiceLC* reason code and a message naming what was wrong; a rejected line records nothing.
    `refusal` (reason code, message) rejects every line (e.g. the CDAR broke a BR-FR-CDV rule).
    The sender is the invoice's issuer when it is the partner that sent the invoice, its recipient
    otherwise; `recipient_of(conn, invoice)` names the partner the invoice was delivered to (None: not
    known, e.g. routing is off), and any other partner is then refused. `on_recorded(conn, recorded, invoice)` runs for each
    accepted status in the same transaction (the outbound CDAR for the issuer is enqueued there).
    """
    items = []
    for line in lines:
        item = _apply_line(conn, flow_id, partner, line, refusal, recipient_of, on_recorded)
        if report is not None:
            item = LifecycleItem(**{**item.__dict__, "report": report})
        record_item(conn, flow_id, item)
        items.append(item)
    return items


def _apply_line(
    conn: Connection,
    flow_id: str,
    partner: str,
    line: StatusLine,
    refusal: tuple[str, str] | None,
    recipient_of: RecipientOf | None,
    on_recorded: OnRecorded | None,
) -> LifecycleItem:
    summary: dict[str, Any] = dict(line.summary())

    def refused(code: str, message: str, invoice_id: int | None = None) -> LifecycleItem:
        return LifecycleItem(
            line.seq, line.item, line.code or None, invoice_id, REJECTED, code, message, summary
        )

    if refusal is not None:
        return refused(*refusal)
    if line.error is not None or not line.invoice_number or not line.seller_id:
        return refused(LC_RULE_ERROR, line.error or "the line does not name an invoice and its seller")
    invoice = find_invoice(conn, line.invoice_number, line.seller_id)
    if invoice is None:
        return refused(
            LC_ACCESS_DENIED,
            f"unknown invoice: no invoice {line.invoice_number} of seller {line.seller_id} passed through the gateway",
        )
    if invoice["partner"] == partner:
        actor = Actor.ISSUER
    else:
        allowed = recipient_of(conn, invoice) if recipient_of is not None else None
        if allowed is not None and allowed != partner:
            return refused(
                LC_ACCESS_DENIED,
                f"unknown invoice: invoice {line.invoice_number} of seller {line.seller_id} was not sent to you",
            )
        actor = Actor.RECIPIENT
    summary["invoice_id"] = invoice["id"]
    details = None
    if line.amount is not None:
        details = {
            "amount": str(line.amount),
            "vat_rate": None if line.vat_rate is None else str(line.vat_rate),
        }
        details["currency"] = line.currency or invoice.get("currency")
    try:
        recorded = record_status(
            conn,
            invoice["id"],
            line.code,
            actor=actor,
            reason_code=line.reason_code,
            reason_text=line.reason_text,
            source_flow=flow_id,
            at=line.at,
            partner=partner,
            b2g=line.b2g,
            details=details,
        )
    except StatusRefused as exc:
        return refused(exc.reason_code, f"invoice {line.invoice_number}: {exc.message}", invoice["id"])
    if on_recorded is not None:
        on_recorded(conn, recorded, invoice)
    return LifecycleItem(line.seq, line.item, line.code, invoice["id"], ACCEPTED, None, None, summary)
