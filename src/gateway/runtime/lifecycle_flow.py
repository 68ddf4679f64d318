"""Lifecycle flows in the pipeline (issue 18): the small hook that makes a status flow go through.

A flow identified as a lifecycle message (CDAR D22B or the status CSV) skips invoice validation: its
VALIDATE step reads the status lines (a CDAR is first judged by the CDAR XSD and the BR-FR-CDV rules,
pack `br-fr-cdv`), then applies them to the store in the same transaction as the flow's move to
VALIDATED (`Store.advance(within=...)`). Its ACK step builds the acknowledgement from what became of
each line (`lifecycle_items`): one detail per refused line with its InvoiceLC* reason code.

`outgoing_status()` turns a recorded status and its invoice into what the CDAR builder needs;
`cdar_messages()` lists the CDAR messages a status produces (for the issuer or the recipient, plus the
national concentrator copy for 200/210/212/213). Enqueuing them in the outbox is done by the composition
root's `on_recorded` hook once the outbox exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from gateway.config import LifecycleConfig
from gateway.model import LIFECYCLE_SYNTAXES, Identification, ReasonCode, Syntax
from gateway.statemachine import Event
from gateway.store.db import Store
from gateway.store.lifecycle import (
    ACCEPTED,
    OnRecorded,
    RecipientOf,
    RecordedStatus,
    apply_status_lines,
    flow_items,
    record_validation_statuses,
)
from gateway.store.models import FlowRow, InvoiceRow
from gateway.transforms.ack_build import FlowVerdict, InvoiceVerdict
from gateway.transforms.cdar_build import (
    Audience,
    OutgoingStatus,
    Party,
    Platform,
    build_cdar,
    cdar_file_name,
)
from gateway.transforms.lifecycle import CONCENTRATOR_STATUSES, LC_RULE_ERROR
from gateway.transforms.lifecycle_in import StatusLine, parse_cdar, parse_status_csv
from gateway.transforms.xmlsafe import parse_xml

if TYPE_CHECKING:
    from gateway.runtime.pipeline import FlowContext, Pipeline


def is_lifecycle(ctx: FlowContext) -> bool:
    ident = ctx.identification
    syntax = ident.syntax.value if ident is not None else ctx.flow.values.get("syntax")
    return syntax in LIFECYCLE_SYNTAXES


def read_lines(
    ident: Identification, validate: Callable[[bytes, str | None], dict[str, Any]] | None
) -> tuple[list[StatusLine], tuple[str, str] | None, dict[str, Any] | None]:
    """(status lines, refusal of them all or None, CDAR validation report or None).

    `validate(xml, profile)` judges a CDAR message (returns the report as plain data); a CDAR that is
    not valid has every line refused with InvoiceLCRuleError and the rules it broke.
    """
    from gateway.runtime.pipeline import rejection_message  # the same wording as invoice rejections

    doc = ident.invoices[0]
    if ident.syntax == Syntax.STATUS_CSV:
        return parse_status_csv(doc.xml), None, None
    lines = parse_cdar(parse_xml(doc.xml))
    if validate is None:
        return lines, None, None
    report = validate(doc.xml, doc.profile)
    if report["outcome"] == "valid":
        return lines, None, report
    return lines, (LC_RULE_ERROR, "the CDAR message is not valid: " + rejection_message(report)), report


def validate_step(
    pipeline: Pipeline,
    ctx: FlowContext,
    started: float,
    *,
    recipient_of: RecipientOf | None = None,
    on_recorded: OnRecorded | None = None,
) -> bool:
    """VALIDATE of a lifecycle flow: judge and apply its statuses, commit them with the state change."""
    from gateway.runtime.pipeline import report_to_dict

    flow = ctx.flow
    ident = pipeline._identification(ctx)

    def validate(xml: bytes, profile: str | None) -> dict[str, Any]:
        return report_to_dict(pipeline.validator.validate(xml, Syntax.CDAR, profile, None, flow.partner))

    lines, refusal, report = read_lines(ident, validate)
    recorded: list[RecordedStatus] = []
    counts = {"accepted": 0, "rejected": 0}

    def collect(conn: Connection, status: RecordedStatus, invoice: dict[str, Any]) -> None:
        recorded.append(status)
        if on_recorded is not None:
            on_recorded(conn, status, invoice)

    def apply(conn: Connection) -> None:
        recorded.clear()
        items = apply_status_lines(
            conn,
            flow_id=flow.id,
            partner=flow.partner,
            lines=lines,
            refusal=refusal,
            report=report,
            recipient_of=recipient_of,
            on_recorded=collect,
        )
        accepted = sum(1 for item in items if item.status == ACCEPTED)
        counts.update(accepted=accepted, rejected=len(items) - accepted)
        conn.execute(
            update(FlowRow)
            .where(FlowRow.id == flow.id)
            .values(
                invoice_count=len(items), invoices_accepted=accepted, invoices_rejected=len(items) - accepted
            )
        )

    ok = pipeline._advance(
        ctx,
        Event.VALIDATE,
        "validate",
        started,
        reason=f"lifecycle: {len(lines)} status line(s)",
        within=apply,
    )
    if ok:
        for status in recorded:
            pipeline.metrics.invoice_statuses.labels(status.code).inc()
        pipeline.log.info(
            "lifecycle statuses applied",
            **counts,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    return ok


def first_statuses(
    pipeline: Pipeline, ctx: FlowContext, on_recorded: OnRecorded | None = None
) -> Callable[[Connection], None]:
    """The `within` hook of an invoice flow's VALIDATE: 200 / 213 / 501 for each invoice it stored.

    `on_recorded(conn, status, invoice)` runs for each, in the same transaction (the composition root
    enqueues the CDAR for the issuer and the concentrator copy there). The metric is counted in the
    hook: only a failing COMMIT after it would over-count, and the retried step then records again.
    """

    def within(conn: Connection) -> None:
        for status in record_validation_statuses(conn, ctx.flow.id):
            if on_recorded is not None:
                on_recorded(conn, status, _invoice_row(conn, status.invoice_id))
            pipeline.metrics.invoice_statuses.labels(status.code).inc()

    return within


def _invoice_row(conn: Connection, invoice_id: int) -> dict[str, Any]:
    """The invoice row with `partner` (who sent it), as `find_invoice` returns it."""
    row = conn.execute(
        select(InvoiceRow.__table__, FlowRow.partner)
        .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
        .where(InvoiceRow.id == invoice_id)
    ).one()
    return dict(row._mapping)


def platform_of(config: LifecycleConfig) -> Platform:
    return Platform(name=config.platform_name, id=config.platform_id or None)


def verdict(store: Store, ctx: FlowContext) -> FlowVerdict | None:
    """The acknowledgement verdict of a lifecycle flow (None for any other flow)."""
    if not is_lifecycle(ctx):
        return None
    from gateway.runtime.pipeline import invoice_verdict

    flow = ctx.flow
    ident = ctx.identification
    syntax = ident.syntax.value if ident else flow.values.get("syntax")
    with store.reader() as conn:
        rows = flow_items(conn, flow.id)
    items: tuple[InvoiceVerdict, ...] = tuple(
        invoice_verdict(
            {**row, "syntax": syntax, "profile": ident.profile if ident else flow.values.get("profile")}
        )
        for row in rows
    )
    return FlowVerdict(
        flow.id, flow.partner, flow.filename, flow.size, flow.sha256, flow.received_at,
        syntax=syntax,
        syntax_code=ident.syntax_code if ident else flow.values.get("syntax_code"),
        profile=ident.profile if ident else flow.values.get("profile"),
        invoices=items,
        reason_code=None if items else ReasonCode.SYNTAX.value,
        reason_message=None if items else "the flow holds no status line",
    )  # fmt: skip


# -- outgoing messages --------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutgoingCdar:
    audience: Audience  # issuer | recipient | ppf
    remote_name: str
    payload: bytes


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def outgoing_status(status: RecordedStatus, invoice: dict[str, Any]) -> OutgoingStatus:
    """What a CDAR says about `status`, from the invoice row (`summary_json` holds the full summary)."""
    summary = json.loads(invoice.get("summary_json") or "{}")
    siret = invoice.get("seller_siret") or summary.get("seller_siret") or ""
    seller_siren = summary.get("seller_siren") or siret[:9]
    buyer_siret = invoice.get("buyer_siret") or summary.get("buyer_siret") or ""
    buyer = Party(buyer_siret[:9], summary.get("buyer_name")) if len(buyer_siret) >= 9 else None
    amount = rate = None
    details = status.details or {}
    if status.code == "212":
        amount = _decimal(details.get("amount")) or _decimal(summary.get("amount_due"))
        amount = amount if amount is not None else _decimal(summary.get("total_gross"))
        rate = _decimal(details.get("vat_rate"))
        if rate is None:  # one rate for the whole invoice: its VAT over its net total
            net, vat = _decimal(summary.get("total_net")), _decimal(summary.get("total_vat"))
            rate = (vat * 100 / net).quantize(Decimal("0.01")) if net and vat is not None else Decimal("0")
    return OutgoingStatus(
        status_id=status.id,
        code=status.code,
        at=status.at,
        invoice_number=invoice.get("number") or summary.get("number") or "",
        invoice_date=invoice.get("issue_date") or summary.get("issue_date") or status.at.date().isoformat(),
        seller=Party(seller_siren, summary.get("seller_name")),
        buyer=buyer,
        set_by=status.actor,  # type: ignore[arg-type]  # platform | issuer | recipient (Actor values)
        type_code=invoice.get("type_code"),
        reason_code=status.reason_code,
        reason_text=status.reason_text,
        amount=amount,
        vat_rate=rate,
        currency=details.get("currency") or invoice.get("currency") or "EUR",
    )


def cdar_messages(
    status: RecordedStatus, invoice: dict[str, Any], platform: Platform | None = None
) -> list[OutgoingCdar]:
    """The CDAR messages one recorded status produces.

    A status set by the recipient or by the gateway goes to the issuer; one set by the issuer goes to
    the recipient (when the invoice names a buyer SIREN). The four statuses the tax authority receives
    (200, 210, 212, 213) also get a copy with the concentrator profile.
    """
    outgoing = outgoing_status(status, invoice)
    audiences: list[Audience] = []
    if status.actor == "issuer":
        if outgoing.buyer is not None:
            audiences.append("recipient")
    else:
        audiences.append("issuer")
    if status.code in CONCENTRATOR_STATUSES:
        audiences.append("ppf")
    return [
        OutgoingCdar(
            audience, cdar_file_name(outgoing, audience), build_cdar(outgoing, audience, platform=platform)
        )
        for audience in audiences
    ]
