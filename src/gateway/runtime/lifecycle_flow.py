"""Lifecycle in the pipeline and the delivery workers (issue 18): small hooks, one module.

* A flow identified as a lifecycle message (CDAR D22B or the status CSV) skips invoice validation: its
  VALIDATE step (`validate_step`) reads the status lines (a CDAR is first judged by the CDAR XSD and the
  BR-FR-CDV rules, pack `br-fr-cdv`), applies them and moves the flow to VALIDATED in ONE transaction.
  Its route step acknowledges it from what became of each line (`lifecycle_items`, `verdict`).
* An invoice flow gets its first statuses in the route transaction (`first_statuses`): 200 Déposée for
  an accepted invoice, 213 Rejetée with the reason (validation or routing), 200 then 221 for a routing
  code that does not match, 501 for an unreadable item.
* A delivery row sent by the delivery workers records 203 Mise à disposition (`delivered_hook`).
* Every recorded status enqueues its CDAR messages in the same transaction (`LifecycleOutbound`): for
  the issuer (`partner:<issuer>`) or the recipient (the sink its invoice was delivered to), and for the
  national concentrator (`lifecycle.concentrator_sink`) for 200, 210, 212, 213.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.engine import Connection

from gateway.config import GatewayConfig, LifecycleConfig
from gateway.model import LIFECYCLE_SYNTAXES, Identification, ReasonCode, Syntax
from gateway.statemachine import Event, transition
from gateway.store.lifecycle import (
    ACCEPTED,
    RecordedStatus,
    StatusRefused,
    apply_status_lines,
    current_status,
    flow_items,
    record_status,
    record_validation_statuses,
)
from gateway.store.models import FlowRow, InvoiceRow, OutboxRow
from gateway.store.outbox import OutboxItem, enqueue
from gateway.telemetry.metrics import Metrics
from gateway.transforms.ack_build import FlowVerdict, InvoiceVerdict
from gateway.transforms.cdar_build import (
    Audience,
    OutgoingStatus,
    Party,
    Platform,
    build_cdar,
    cdar_file_name,
)
from gateway.transforms.lifecycle import CONCENTRATOR_STATUSES, LC_RULE_ERROR, Actor
from gateway.transforms.lifecycle_in import StatusLine, parse_cdar, parse_status_csv
from gateway.transforms.xmlsafe import parse_xml

if TYPE_CHECKING:
    from gateway.runtime.pipeline import FlowContext, Pipeline

# The acknowledgement already tells the issuer these; its CDAR copy goes to the concentrator only.
NOT_COPIED_TO_ISSUER = frozenset({"200", "213", "501"})
log = structlog.get_logger("gateway.lifecycle")


class _GuardFailed(Exception):
    """The flow moved under us (lease lost): roll the whole transaction back."""


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


# -- who the recipient is -----------------------------------------------------------------------------
def delivery_sink(conn: Connection, invoice_id: int) -> str | None:
    """The sink the invoice was delivered to (its newest delivery row), None when it was not routed."""
    return conn.execute(
        select(OutboxRow.sink)
        .where(OutboxRow.invoice_id == invoice_id, OutboxRow.kind == "delivery")
        .order_by(OutboxRow.id.desc())
        .limit(1)
    ).scalar()


def recipient_partner(conn: Connection, invoice: dict[str, Any]) -> str | None:
    """The partner the invoice was delivered to (`partner:<id>` sink), None when unknown."""
    sink = delivery_sink(conn, int(invoice["id"]))
    return sink.removeprefix("partner:") if sink and sink.startswith("partner:") else None


# -- outgoing CDAR ------------------------------------------------------------------------------------
class LifecycleOutbound:
    """Enqueues the CDAR messages of each recorded status, in the transaction that records it."""

    def __init__(self, config: LifecycleConfig, metrics: Metrics | None = None) -> None:
        self.platform = platform_of(config)
        self.concentrator_sink = config.concentrator_sink
        self.metrics = metrics

    def on_recorded(self, conn: Connection, status: RecordedStatus, invoice: dict[str, Any]) -> None:
        recipient_sink = delivery_sink(conn, status.invoice_id)
        try:
            messages = cdar_messages(status, invoice, self.platform)
        except ValueError as exc:  # the status stands; a message we cannot build must not block the flow
            log.error("CDAR not built", invoice_id=status.invoice_id, code=status.code, error=str(exc))
            messages = []
        for message in messages:
            if message.audience == "issuer":
                if status.actor == Actor.PLATFORM.value and status.code in NOT_COPIED_TO_ISSUER:
                    continue
                kind, sink = "cdar", f"partner:{invoice['partner']}"
            elif message.audience == "recipient":
                if recipient_sink is None:
                    continue  # not routed: no recipient to tell
                kind, sink = "cdar", recipient_sink
            else:
                if not self.concentrator_sink:
                    continue
                kind, sink = "concentrator", self.concentrator_sink
            enqueue(
                conn, kind=kind, sink=sink, remote_name=message.remote_name, payload=message.payload,
                flow_id=status.source_flow, invoice_id=status.invoice_id,
                meta={"status": status.code, "audience": message.audience, "number": invoice.get("number")},
            )  # fmt: skip
        self._notify_webhooks(conn, status, invoice)
        if self.metrics is not None:
            self.metrics.invoice_statuses.labels(status.code).inc()

    @staticmethod
    def _notify_webhooks(conn: Connection, status: RecordedStatus, invoice: dict[str, Any]) -> None:
        """An `invoice.status` event for the issuer's and the recipient's webhooks (Flow Service API)."""
        from gateway.api.webhooks import enqueue_event

        body = {
            "eventType": "invoice.status",
            "invoiceId": status.invoice_id,
            "invoiceNumber": invoice.get("number"),
            "statusCode": status.code,
            "statusLabel": status.label,
            "previousStatusCode": status.previous,
            "actor": status.actor,
            "reasonCode": status.reason_code,
            "reasonText": status.reason_text,
            "at": status.at.isoformat(),
            "flowId": status.source_flow,
        }
        partners = [str(invoice["partner"])]
        recipient = recipient_partner(conn, invoice)
        if recipient is not None and recipient not in partners:
            partners.append(recipient)
        for partner in partners:
            enqueue_event(conn, partner, "invoice.status", body)


def outbound_for(pipeline: Pipeline) -> LifecycleOutbound:
    return LifecycleOutbound(pipeline.config.lifecycle, pipeline.metrics)


# -- the VALIDATE step of a lifecycle flow --------------------------------------------------------------
def validate_step(pipeline: Pipeline, ctx: FlowContext, started: float) -> bool:
    """VALIDATE of a lifecycle flow: judge and apply its statuses, commit them with the state change."""
    from gateway.runtime.pipeline import report_to_dict

    flow = ctx.flow
    ident = pipeline._identification(ctx)

    def validate(xml: bytes, profile: str | None) -> dict[str, Any]:
        return report_to_dict(pipeline.validator.validate(xml, Syntax.CDAR, profile, None, flow.partner))

    lines, refusal, report = read_lines(ident, validate)
    outbound = outbound_for(pipeline)
    target = transition(ctx.position, Event.VALIDATE)
    reason = f"lifecycle: {len(lines)} status line(s)"
    try:
        with pipeline.store.transaction() as conn:
            items = apply_status_lines(
                conn, flow_id=flow.id, partner=flow.partner, lines=lines, refusal=refusal, report=report,
                recipient_of=recipient_partner, on_recorded=outbound.on_recorded,
            )  # fmt: skip
            accepted = sum(1 for item in items if item.status == ACCEPTED)
            values = {"invoice_count": len(items), "invoices_accepted": accepted,
                      "invoices_rejected": len(items) - accepted}  # fmt: skip
            if not pipeline.store.advance_in(
                conn, flow, ctx.position.state, target.state, worker=pipeline.worker, stage="validate",
                reason=f"{reason}, {accepted} applied", duration_ms=(time.perf_counter() - started) * 1000,
                values=values, lease_seconds=pipeline.config.workers.lease_seconds,
            ):  # fmt: skip
                raise _GuardFailed
    except _GuardFailed:
        pipeline.log.warning("lease lost, flow left to its new owner", stage="validate")
        return False
    pipeline.log.info("flow state", stage="validate", from_state=ctx.position.state.value,
                      to_state=target.state.value, reason=f"{reason}, {accepted} applied")  # fmt: skip
    ctx.position = target
    return True


# -- the route transaction of an invoice flow -------------------------------------------------------------
def first_statuses(pipeline: Pipeline, conn: Connection, flow: Any) -> list[RecordedStatus]:
    """200 / 213 / 221 / 501 for the invoices of `flow` that have no status yet (after routing)."""
    outbound = outbound_for(pipeline)
    recorded = record_validation_statuses(conn, flow.id)
    for status in recorded:
        outbound.on_recorded(conn, status, invoice_row(conn, status.invoice_id))
    return recorded


def invoice_row(conn: Connection, invoice_id: int) -> dict[str, Any]:
    """The invoice row with `partner` (who sent it), as `find_invoice` returns it."""
    row = conn.execute(
        select(InvoiceRow.__table__, FlowRow.partner)
        .join(FlowRow, FlowRow.id == InvoiceRow.flow_id)
        .where(InvoiceRow.id == invoice_id)
    ).one()
    return dict(row._mapping)


def platform_of(config: LifecycleConfig) -> Platform:
    return Platform(name=config.platform_name, id=config.platform_id or None)


# -- delivery: 203 Mise à disposition -----------------------------------------------------------------------
def delivered_hook(
    config: GatewayConfig, metrics: Metrics | None = None
) -> Callable[[Connection, OutboxItem], None]:
    """A delivery worker SentHook: a delivered invoice becomes 203 (once; a re-send records nothing)."""
    outbound = LifecycleOutbound(config.lifecycle, metrics)

    def hook(conn: Connection, item: OutboxItem) -> None:
        if item.kind != "delivery" or item.invoice_id is None:
            return
        if current_status(conn, item.invoice_id) not in ("200", "221"):
            return  # already made available (a re-send), or no longer deliverable
        try:
            status = record_status(
                conn, item.invoice_id, "203", actor=Actor.PLATFORM, source_flow=item.flow_id
            )
        except StatusRefused as exc:  # cannot happen from 200 / 221; logged rather than failing the send
            log.warning("203 not recorded", invoice_id=item.invoice_id, reason=exc.message)
            return
        outbound.on_recorded(conn, status, invoice_row(conn, item.invoice_id))

    return hook


def verdict(conn: Connection, ctx: FlowContext) -> FlowVerdict | None:
    """The acknowledgement verdict of a lifecycle flow (None for any other flow)."""
    if not is_lifecycle(ctx):
        return None
    from gateway.runtime.pipeline import invoice_verdict

    flow = ctx.flow
    ident = ctx.identification
    syntax = ident.syntax.value if ident else flow.values.get("syntax")
    profile = ident.profile if ident else flow.values.get("profile")
    items: tuple[InvoiceVerdict, ...] = tuple(
        invoice_verdict({**row, "syntax": syntax, "profile": profile}) for row in flow_items(conn, flow.id)
    )
    return FlowVerdict(
        flow.id, flow.partner, flow.filename, flow.size, flow.sha256, flow.received_at,
        syntax=syntax,
        syntax_code=ident.syntax_code if ident else flow.values.get("syntax_code"),
        profile=profile,
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
