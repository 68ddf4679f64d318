"""Technical acknowledgements (pure): a FlowVerdict → XML (schemas/ack-1.xsd) and JSON.

Vocabulary of AFNOR XP Z12-013 (domain.md §3): Status Ok / Error, details with reason codes.
A flow is Ok when at least one invoice was accepted (Chorus Pro IN_INTEGRE or, when some were
rejected, IN_INTEGRE_PARTIEL); Error when the flow itself or every invoice was rejected (IN_REJETE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

ACK_NS = "urn:flow-gateway:ack:1"
INVOICE_ACCEPTED = "accepted"
INVOICE_REJECTED = "rejected"


@dataclass(frozen=True)
class LayerVerdict:
    name: str
    pack: str
    version: str
    artefact: str
    sha256: str
    status: str  # passed | failed | not_run | error
    message: str = ""


@dataclass(frozen=True)
class InvoiceVerdict:
    seq: int
    item: str
    status: str  # accepted | rejected
    syntax: str | None = None
    profile: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    reason_code: str | None = None
    reason_message: str | None = None
    outcome: str | None = None  # validation outcome: valid | invalid | not_validated
    layers: tuple[LayerVerdict, ...] = ()
    findings: tuple[dict[str, Any], ...] = ()  # Finding.to_dict() items


@dataclass(frozen=True)
class FlowVerdict:
    flow_id: str
    partner: str
    filename: str
    size: int
    sha256: str | None
    received_at: datetime
    reason_code: str | None = None  # flow-level rejection
    reason_message: str | None = None
    syntax: str | None = None
    syntax_code: str | None = None
    profile: str | None = None
    invoices: tuple[InvoiceVerdict, ...] = ()

    @property
    def accepted(self) -> int:
        return sum(1 for inv in self.invoices if inv.status == INVOICE_ACCEPTED)

    @property
    def rejected(self) -> int:
        return len(self.invoices) - self.accepted

    @property
    def status(self) -> str:
        return "Ok" if self.reason_code is None and self.accepted > 0 else "Error"

    @property
    def flow_status(self) -> str:
        if self.status == "Error":
            return "IN_REJETE"
        return "IN_INTEGRE_PARTIEL" if self.rejected else "IN_INTEGRE"


NAME_MAX_BYTES = 255  # Linux file-name limit; `.part` is added while the ack is written


def ack_file_name(filename: str, flow_id: str, extension: str) -> str:
    """`<original name>.<flow id>.ack.<ext>`: unique per flow, so a retried write overwrites itself.

    A very long original name is shortened so the name (plus `.part` while writing) fits the limit.
    """
    suffix = f".{flow_id}.ack.{extension}"
    room = NAME_MAX_BYTES - len(".part") - len(suffix.encode())
    stem = filename.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
    return stem + suffix


def details(verdict: FlowVerdict) -> list[dict[str, Any]]:
    out = []
    if verdict.reason_code:
        out.append(
            {
                "level": "flow",
                "item": verdict.filename,
                "reasonCode": verdict.reason_code,
                "reasonMessage": verdict.reason_message or "",
            }
        )
    for inv in verdict.invoices:
        if inv.status != INVOICE_ACCEPTED:
            out.append(
                {
                    "level": "invoice",
                    "item": inv.item,
                    "reasonCode": inv.reason_code or "",
                    "reasonMessage": inv.reason_message or "",
                }
            )
    return out


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def build_ack_xml(verdict: FlowVerdict, issued_at: datetime, max_findings: int = 50) -> bytes:
    root = etree.Element(f"{{{ACK_NS}}}Acknowledgement", nsmap={None: ACK_NS}, version="1")

    def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
        el = etree.SubElement(parent, f"{{{ACK_NS}}}{tag}", {k: v for k, v in attrs.items() if v is not None})
        if text is not None:
            el.text = _xml_text(text)
        return el

    sub(root, "FlowId", verdict.flow_id)
    sub(root, "Partner", verdict.partner)
    sub(root, "FileName", verdict.filename)
    sub(root, "Size", str(verdict.size))
    if verdict.sha256:
        sub(root, "Sha256", verdict.sha256)
    sub(root, "ReceivedAt", _iso(verdict.received_at))
    sub(root, "IssuedAt", _iso(issued_at))
    sub(root, "Status", verdict.status)
    sub(root, "FlowStatus", verdict.flow_status)
    if verdict.syntax:
        sub(root, "Syntax", verdict.syntax, code=verdict.syntax_code, profile=verdict.profile)
    sub(
        root,
        "Counts",
        invoices=str(len(verdict.invoices)),
        accepted=str(verdict.accepted),
        rejected=str(verdict.rejected),
    )
    details_el = sub(root, "Details")
    for d in details(verdict):
        el = sub(details_el, "Detail", level=d["level"], item=d["item"])
        sub(el, "ReasonCode", d["reasonCode"] or "UNKNOWN")
        sub(el, "ReasonMessage", d["reasonMessage"])
    invoices_el = sub(root, "Invoices")
    for inv in verdict.invoices:
        inv_el = sub(
            invoices_el,
            "Invoice",
            seq=str(inv.seq),
            item=inv.item,
            syntax=inv.syntax,
            profile=inv.profile,
            status="Accepted" if inv.status == INVOICE_ACCEPTED else "Rejected",
            reasonCode=inv.reason_code,
        )
        summary_el = sub(inv_el, "Summary")
        for key, value in inv.summary.items():
            if value not in (None, ""):
                sub(summary_el, "Field", str(value), name=key)
        if inv.outcome:
            val_el = sub(inv_el, "Validation", outcome=inv.outcome)
            for layer in inv.layers:
                sub(
                    val_el,
                    "Layer",
                    layer.message,
                    name=layer.name,
                    pack=layer.pack,
                    version=layer.version,
                    artefact=layer.artefact,
                    sha256=layer.sha256,
                    status=layer.status,
                )
        for finding in inv.findings[:max_findings]:
            f_el = sub(
                inv_el,
                "Finding",
                rule=finding.get("rule_id") or "UNKNOWN",
                severity=finding.get("severity", "fatal"),
                location=finding.get("location") or None,
                pack=finding.get("pack") or None,
            )
            sub(f_el, "Message", finding.get("message", ""))
        if len(inv.findings) > max_findings:
            sub(inv_el, "OmittedFindings", str(len(inv.findings) - max_findings))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def build_ack_dict(verdict: FlowVerdict, issued_at: datetime, max_findings: int = 50) -> dict[str, Any]:
    return {
        "version": 1,
        "flowId": verdict.flow_id,
        "partner": verdict.partner,
        "fileName": verdict.filename,
        "size": verdict.size,
        "sha256": verdict.sha256,
        "receivedAt": _iso(verdict.received_at),
        "issuedAt": _iso(issued_at),
        "status": verdict.status,
        "flowStatus": verdict.flow_status,
        "syntax": verdict.syntax,
        "syntaxCode": verdict.syntax_code,
        "profile": verdict.profile,
        "counts": {
            "invoices": len(verdict.invoices),
            "accepted": verdict.accepted,
            "rejected": verdict.rejected,
        },
        "details": details(verdict),
        "invoices": [
            {
                "seq": inv.seq,
                "item": inv.item,
                "syntax": inv.syntax,
                "profile": inv.profile,
                "status": "Accepted" if inv.status == INVOICE_ACCEPTED else "Rejected",
                "reasonCode": inv.reason_code,
                "reasonMessage": inv.reason_message,
                "summary": inv.summary,
                "validation": None
                if not inv.outcome
                else {"outcome": inv.outcome, "layers": [layer.__dict__ for layer in inv.layers]},
                "findings": list(inv.findings[:max_findings]),
                "omittedFindings": max(0, len(inv.findings) - max_findings),
            }
            for inv in verdict.invoices
        ],
    }


def build_ack_json(verdict: FlowVerdict, issued_at: datetime, max_findings: int = 50) -> bytes:
    return json.dumps(build_ack_dict(verdict, issued_at, max_findings), ensure_ascii=False, indent=2).encode()


def _xml_text(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (a partner's file name or a parser message may hold them)."""
    return "".join(
        ch
        for ch in text
        if ch in "\t\n\r" or 0x20 <= ord(ch) <= 0xD7FF or 0xE000 <= ord(ch) <= 0xFFFD or ord(ch) > 0xFFFF
    )
