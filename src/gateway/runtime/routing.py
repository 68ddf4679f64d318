"""The route stage's decisions, inside the pipeline's VALIDATED → ROUTED transaction.

For each accepted invoice of a flow: its attachments are checked (BG-24, IRR_*_PJ reasons), then
`route_invoice` (transforms/route.py, over the directory in the
store) either rejects it (the invoice row becomes `rejected` with the reason code; a partial batch stays
partial) or names a recipient; a routed invoice gets a `delivery` outbox row to the recipient's sink, in
the recipient's syntax, under a deterministic name. Everything here runs in the caller's transaction.

When the directory is empty, routing is off: `route` returns None and the flow is acknowledged as
before routing existed (validate and answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from gateway.config import GatewayConfig
from gateway.model import Identification, InvoiceDocument, Syntax
from gateway.store.blobs import BlobStore
from gateway.store.db import FlowSnapshot
from gateway.store.directory import AcceptedInvoices, DirectoryStore
from gateway.store.models import DirectoryEntryRow, InvoiceRow
from gateway.store.outbox import enqueue
from gateway.transforms.ack_build import INVOICE_ACCEPTED, INVOICE_REJECTED
from gateway.transforms.attachments import check_invoice_attachments
from gateway.transforms.convert import Converter
from gateway.transforms.delivery_format import (
    DeliveredDocument,
    DeliveryFormatError,
    delivery_base_name,
    format_for_recipient,
)
from gateway.transforms.route import DOUBLON, STATUS_REJECTED, Recipient, RouteDecision, route_invoice

MAX_FINDINGS_IN_MESSAGE = 3
# Called in the route transaction for every decision (the lifecycle helper records 213 / 221 here).
DecisionHook = Callable[[Connection, int, RouteDecision], None]


@dataclass
class RoutingResult:
    routed: int = 0
    rejected: int = 0
    deliveries: list[int] = field(default_factory=list)  # outbox row ids


def _from_pdf(doc: InvoiceDocument, ident: Identification) -> bool:
    """The invoice is the flow's own Factur-X PDF (its bytes are the flow's blob)."""
    return doc.container == "pdf" and ident.syntax is Syntax.FACTURX_PDF


def delivery_document(
    doc: InvoiceDocument,
    ident: Identification,
    seq: int,
    target: str,
    flow: FlowSnapshot,
    blobs: BlobStore,
    converter: Converter,
) -> tuple[DeliveredDocument, bool]:
    """The invoice in the recipient's syntax (transforms/delivery_format.py), under a deterministic name
    (`<flow id>_<seq>_<invoice number>`: the same invoice always gets the same name, a re-send overwrites).

    Returns (document, is the flow's own blob): a Factur-X PDF delivered as received is sent from the
    blob store instead of being copied into the outbox row."""
    from_pdf = _from_pdf(doc, ident)
    received = blobs.read(flow.sha256) if from_pdf and flow.sha256 else doc.xml
    base = delivery_base_name(flow.id, f"{seq:03d}", doc.summary.number or "")
    try:
        document = format_for_recipient(received, target, base, converter)
    except DeliveryFormatError as exc:  # the gateway's conversion failed: not the sender's fault, retried
        raise RuntimeError(f"cannot deliver {doc.item} as {target}: {exc}") from None
    return document, from_pdf and document.data is received


class Router:
    """Routing decisions and delivery rows for one flow, in the caller's transaction."""

    def __init__(
        self,
        config: GatewayConfig,
        blobs: BlobStore,
        converter: Converter | None = None,
        decision_hooks: Sequence[DecisionHook] = (),
    ) -> None:
        self.config = config
        self.blobs = blobs
        self.converter = converter or Converter()
        self.decision_hooks = list(decision_hooks)

    def _attachment_problem(
        self, doc: InvoiceDocument, ident: Identification, flow: FlowSnapshot
    ) -> RouteDecision | None:
        """BG-24 attachments (and a Factur-X PDF's embedded files) checked before delivery, with the
        IRR_*_PJ reasons of status 501 (chorus-reference.md §3.2); None when they pass."""
        received = self.blobs.read(flow.sha256) if _from_pdf(doc, ident) and flow.sha256 else doc.xml
        findings = check_invoice_attachments(received, doc.xml)
        if not findings:
            return None
        message = "; ".join(f.message for f in findings[:MAX_FINDINGS_IN_MESSAGE])
        more = len(findings) - MAX_FINDINGS_IN_MESSAGE
        message += f" (+{more} more)" if more > 0 else ""
        return RouteDecision(
            None, findings[0].reason_code, message, status_code="501", details={"field": "BG-24"}
        )

    def sink_id(self, recipient: Recipient) -> str:
        """`partner:<recipient partner>`, unless the directory line names a `[sinks.<id>]` or a sink id."""
        target = recipient.partner or ""
        if ":" in target or target in self.config.sinks:
            return target
        return f"partner:{target}"

    def route(
        self,
        conn: Connection,
        flow: FlowSnapshot,
        invoices: Sequence[dict[str, Any]],
        documents: Callable[[], Identification],
    ) -> RoutingResult | None:
        """Route every accepted invoice row of `flow`; None when routing is off (empty directory)."""
        if conn.execute(select(DirectoryEntryRow.id).limit(1)).first() is None:
            return None  # no directory loaded: routing is off
        directory = DirectoryStore(conn)
        duplicates = AcceptedInvoices(conn, exclude_flow=flow.id)
        result = RoutingResult()
        for row in invoices:
            if row["status"] != INVOICE_ACCEPTED:
                continue
            summary = json.loads(row["summary_json"])
            ident = documents()
            doc = ident.invoices[row["seq"] - 1]
            decision = self._attachment_problem(doc, ident, flow) or route_invoice(
                summary, directory, duplicates
            )
            if decision.routed and not duplicates.record(summary):
                # a twin routed by another flow committed meanwhile (accepted_invoice_keys is unique)
                decision = RouteDecision(
                    None, DOUBLON, f"invoice {row.get('number')} (BT-1) of this seller was accepted meanwhile",
                    status_code=STATUS_REJECTED, details={"field": "BT-1"},
                )  # fmt: skip
            for hook in self.decision_hooks:
                hook(conn, int(row["id"]), decision)
            if not decision.routed or decision.recipient is None:
                conn.execute(
                    update(InvoiceRow)
                    .where(InvoiceRow.id == row["id"])
                    .values(
                        status=INVOICE_REJECTED,
                        reason_code=decision.reason_code,
                        reason_message=decision.message,
                    )
                )
                row.update(status=INVOICE_REJECTED, reason_code=decision.reason_code,
                           reason_message=decision.message)  # fmt: skip
                result.rejected += 1
                continue
            recipient = decision.recipient
            document, as_blob = delivery_document(
                doc, ident, row["seq"], recipient.syntax, flow, self.blobs, self.converter
            )
            row_id = enqueue(
                conn,
                kind="delivery",
                sink=self.sink_id(recipient),
                remote_name=document.filename,
                payload=None if as_blob else document.data,
                payload_sha256=flow.sha256 if as_blob else None,
                flow_id=flow.id,
                invoice_id=int(row["id"]),
                meta={
                    "recipient": recipient.key,
                    "recipient_name": recipient.name,
                    "matched_by": decision.matched_by,
                    "syntax": document.syntax,
                    "media_type": document.media_type,
                    "note": document.note,
                    "number": row.get("number"),
                    "partner": flow.partner,
                },
            )
            result.routed += 1
            result.deliveries.append(row_id)
        return result
