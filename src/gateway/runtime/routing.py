"""The route stage's decisions, inside the pipeline's VALIDATED → ROUTED transaction.

For each accepted invoice of a flow: `route_invoice` (transforms/route.py, over the directory in the
store) either rejects it (the invoice row becomes `rejected` with the reason code; a partial batch stays
partial) or names a recipient; a routed invoice gets a `delivery` outbox row to the recipient's sink, in
the recipient's syntax, under a deterministic name. Everything here runs in the caller's transaction.

When the directory is empty, routing is off: `route` returns None and the flow is acknowledged as
before routing existed (validate and answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from gateway.config import GatewayConfig
from gateway.model import Identification, InvoiceDocument, Syntax
from gateway.store.db import FlowSnapshot
from gateway.store.directory import AcceptedInvoices, DirectoryStore
from gateway.store.models import InvoiceRow
from gateway.store.outbox import enqueue
from gateway.transforms.ack_build import INVOICE_ACCEPTED, INVOICE_REJECTED
from gateway.transforms.convert import ConversionError, Converter
from gateway.transforms.route import Recipient, RouteDecision, route_invoice

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NUMBER_IN_NAME = 64
UBL_SYNTAXES = (Syntax.UBL_INVOICE, Syntax.UBL_CREDITNOTE)

# Called in the route transaction for every decision (the lifecycle helper records 213 / 221 here).
DecisionHook = Callable[[Connection, int, RouteDecision], None]


@dataclass(frozen=True)
class DeliveryDocument:
    """What is delivered for one invoice: inline bytes, or a stored blob (a Factur-X PDF as received)."""

    payload: bytes | None
    payload_sha256: str | None
    extension: str  # xml | pdf
    syntax: str  # ubl | cii | facturx


@dataclass
class RoutingResult:
    routed: int = 0
    rejected: int = 0
    deliveries: list[int] = field(default_factory=list)  # outbox row ids


def delivery_name(flow_id: str, seq: int, number: str | None, extension: str) -> str:
    """Deterministic: the same invoice always gets the same name (a re-send overwrites, never adds)."""
    safe = _UNSAFE.sub("_", number or "").strip("._")[:MAX_NUMBER_IN_NAME]
    return f"{flow_id}-{seq:03d}" + (f"-{safe}" if safe else "") + f".{extension}"


def delivery_document(
    doc: InvoiceDocument, target: str, flow_syntax: str | None, flow_sha256: str | None, converter: Converter
) -> DeliveryDocument:
    """The invoice in the recipient's syntax: same | ubl | cii | facturx (issue 17 §3).

    A Factur-X PDF (the flow itself) is delivered as the PDF for `same` and `facturx`, as its embedded
    CII for `cii`, converted to UBL for `ubl`. XML invoices are converted CII ⇄ UBL as asked; `facturx`
    for an XML invoice delivers its CII (the gateway does not render PDFs).
    """
    is_pdf = doc.container == "pdf" and flow_syntax == Syntax.FACTURX_PDF.value and flow_sha256 is not None
    if is_pdf and target in ("same", "facturx"):
        return DeliveryDocument(None, flow_sha256, "pdf", "facturx")
    is_ubl = doc.syntax in UBL_SYNTAXES
    try:
        if target == "ubl" and not is_ubl:
            return DeliveryDocument(converter.cii_to_ubl(doc.xml), None, "xml", "ubl")
        if target in ("cii", "facturx") and is_ubl:
            return DeliveryDocument(converter.ubl_to_cii(doc.xml), None, "xml", "cii")
    except ConversionError as exc:  # the gateway's converter failed: not the sender's fault, retried
        raise RuntimeError(f"cannot convert {doc.item} to {target}: {exc.message}") from None
    return DeliveryDocument(doc.xml, None, "xml", "ubl" if is_ubl else "cii")


class Router:
    """Routing decisions and delivery rows for one flow, in the caller's transaction."""

    def __init__(
        self,
        config: GatewayConfig,
        converter: Converter | None = None,
        decision_hooks: Sequence[DecisionHook] = (),
    ) -> None:
        self.config = config
        self.converter = converter or Converter()
        self.decision_hooks = list(decision_hooks)

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
        directory = DirectoryStore(conn)
        if directory.count() == 0:
            return None
        duplicates = AcceptedInvoices(conn, exclude_flow=flow.id)
        result = RoutingResult()
        for row in invoices:
            if row["status"] != INVOICE_ACCEPTED:
                continue
            summary = json.loads(row["summary_json"])
            decision = route_invoice(summary, directory, duplicates)
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
            duplicates.remember_summary(summary)
            recipient = decision.recipient
            doc = documents().invoices[row["seq"] - 1]
            document = delivery_document(
                doc, recipient.syntax, flow.values.get("syntax"), flow.sha256, self.converter
            )
            row_id = enqueue(
                conn,
                kind="delivery",
                sink=self.sink_id(recipient),
                remote_name=delivery_name(flow.id, row["seq"], row.get("number"), document.extension),
                payload=document.payload,
                payload_sha256=document.payload_sha256,
                flow_id=flow.id,
                invoice_id=int(row["id"]),
                meta={
                    "recipient": recipient.key,
                    "recipient_name": recipient.name,
                    "matched_by": decision.matched_by,
                    "syntax": document.syntax,
                    "number": row.get("number"),
                    "partner": flow.partner,
                },
            )
            result.routed += 1
            result.deliveries.append(row_id)
        return result
