"""Our flows as AFNOR Flow Service 1.3.0 `Flow` resources, and the partner's flow search.

Mapping (chorus-reference.md §3.3, domain.md §3):
- `acknowledgement.status`: the status of the acknowledgement the gateway wrote (`Ok` / `Error`,
  `flows.ack_status`); `Pending` while no acknowledgement exists yet (in progress, or FAILED and waiting
  for its retry).
- `acknowledgement.details`: the flow-level reason and every rejected invoice, level `Error`, with the
  standard's `ReasonCodeEnum` where one exists (IRR_VID_F → EmptyFlow, IRR_SYNTAX → InvalidSchema,
  IRR_TAILLE_F → FileSizeExceeded, …) and our stable codes otherwise (REJ_SEMAN, REJ_UNI: the enum is open).
- `flowSyntax`: what identification found (UBL, CII, Factur-X, CDAR); before that, what the partner
  declared in `flowInfo`; for a flow neither recognised nor posted through the API, what its name
  suggests (`.pdf` → Factur-X, otherwise CII, the syntax flat files become).
- `flowProfile`: from the identified profile (EN 16931 → CIUS, BASIC/MINIMUM → Basic, EXTENDED-CTC-FR →
  Extended-CTC-FR), else the declared one, else `Undefined`.
- `processingRule`: the declared one (`processingRuleSource` `Input`), else `Undefined` (`Computed`).
- `flowType`: `CustomerInvoice` for an invoice flow the partner deposits (its outgoing invoices),
  `SupplierInvoiceLC` for a lifecycle message (a status on an invoice it received), `Undefined` until
  identified or when not recognised.
- `flowDirection`: `Out` (from the partner to the platform) for every flow the partner deposited.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.engine import Connection

from gateway.store.models import ApiFlowInfoRow, FlowRow, InvoiceRow

# ReasonCodeEnum of the standard ← our stable codes (chorus-reference.md §3.3; IRR_VIDE_F is the CDAR spelling)
REASON_CODES: dict[str, str] = {
    "IRR_VID_F": "EmptyFlow",
    "IRR_VIDE_F": "EmptyFlow",
    "IRR_SYNTAX": "InvalidSchema",
    "IRR_TAILLE_F": "FileSizeExceeded",
    "IRR_TYPE_F": "FlowTypeError",
    "IRR_EXT_DOC": "AttachmentTypeError",
    "IRR_VID_PJ": "EmptyAttachement",
    "IRR_ANTIVIRUS": "VirusFound",
    "AUTRE": "OtherTechnicalError",
    "ERR_INTERNE": "OtherTechnicalError",
    "AlreadyExistingFlow": "AlreadyExistingFlow",
}
SYNTAXES: dict[str, str] = {
    "ubl-invoice": "UBL",
    "ubl-creditnote": "UBL",
    "ubl": "UBL",
    "cii": "CII",
    "facturx-pdf": "Factur-X",
    "facturx": "Factur-X",
    "cdar": "CDAR",
}
LIFECYCLE_SYNTAXES = {"CDAR"}
NAME_MAX = 255
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
SCAN_BATCH = 200
SCAN_BUDGET = 5000  # rows looked at per search request before answering with a cursor


class SearchError(ValueError):
    """A search request the caller must fix (bad date, cursor or limit)."""


def reason_code(code: str | None) -> str:
    if not code:
        return "OtherTechnicalError"
    return REASON_CODES.get(code, code)


def flow_profile(identified: str | None, declared: str | None) -> str:
    text = (identified or "").lower()
    if "extended-ctc-fr" in text:
        return "Extended-CTC-FR"
    if "basic" in text or "minimum" in text:
        return "Basic"
    if "en16931" in text and "extended" not in text:
        return "CIUS"
    return declared or "Undefined"


def flow_syntax(
    identified: str | None, declared: str | None, invoice_syntaxes: Iterable[str], name: str
) -> str:
    if identified in SYNTAXES:
        return SYNTAXES[identified]
    for syntax in invoice_syntaxes:
        if syntax in SYNTAXES:
            return SYNTAXES[syntax]
    if declared:
        return declared
    return "Factur-X" if name.lower().endswith(".pdf") else "CII"


def ack_status(flow: Mapping[str, Any]) -> str:
    status = flow.get("ack_status")
    return str(status) if status in ("Ok", "Error") else "Pending"


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def flow_resource(
    flow: Mapping[str, Any], info: Mapping[str, Any] | None, invoices: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The `Flow` object of the standard for one flow row, its declared info and its invoice rows."""
    info = info or {}
    status = ack_status(flow)
    identified = flow.get("syntax")
    syntax = flow_syntax(
        identified, info.get("flow_syntax"), (i.get("syntax") or "" for i in invoices), flow["filename"]
    )
    if status == "Pending" and identified is None or identified in (None, "unknown") and not invoices:
        flow_type = "Undefined"
    else:
        flow_type = "SupplierInvoiceLC" if syntax in LIFECYCLE_SYNTAXES else "CustomerInvoice"
    details = []
    if status != "Pending":
        if flow.get("reason_code"):
            details.append(
                {
                    "level": "Error",
                    "item": str(flow["filename"])[:NAME_MAX],
                    "reasonCode": reason_code(flow["reason_code"]),
                    "reasonMessage": flow.get("reason_message") or "",
                }
            )
        for inv in invoices:
            if inv.get("status") == "rejected":
                details.append(
                    {
                        "level": "Error",
                        "item": str(inv.get("item") or f"invoice {inv.get('seq')}"),
                        "reasonCode": reason_code(inv.get("reason_code")),
                        "reasonMessage": inv.get("reason_message") or "",
                    }
                )
    acknowledgement: dict[str, Any] = {"status": status}
    if details:
        acknowledgement["details"] = details
    resource: dict[str, Any] = {
        "flowId": flow["id"],
        "name": str(info.get("name") or flow["filename"])[:NAME_MAX],
        "flowSyntax": syntax,
        "flowProfile": flow_profile(flow.get("profile"), info.get("flow_profile")),
        "processingRule": info.get("processing_rule") or "Undefined",
        "processingRuleSource": "Input" if info.get("processing_rule") else "Computed",
        "flowType": flow_type,
        "flowDirection": "Out",
        "submittedAt": iso(flow["received_at"]),
        "updatedAt": iso(flow["state_changed_at"]),
        "acknowledgement": acknowledgement,
    }
    if info.get("tracking_id"):
        resource["trackingId"] = info["tracking_id"]
    if flow.get("sha256"):
        resource["sha256"] = flow["sha256"]
    return resource


# -- reading ----------------------------------------------------------------------------------------
def _base_query() -> Select[Any]:
    return select(
        FlowRow.__table__,
        ApiFlowInfoRow.tracking_id,
        ApiFlowInfoRow.name.label("info_name"),
        ApiFlowInfoRow.flow_syntax,
        ApiFlowInfoRow.flow_profile,
        ApiFlowInfoRow.processing_rule,
    ).outerjoin(ApiFlowInfoRow, ApiFlowInfoRow.flow_id == FlowRow.id)


def _split(row: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    data = dict(row)
    info_keys = ("tracking_id", "info_name", "flow_syntax", "flow_profile", "processing_rule")
    info = {k: data.pop(k) for k in info_keys}
    info["name"] = info.pop("info_name")
    return data, (info if info["flow_syntax"] is not None else None)


def _invoices_of(conn: Connection, flow_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {fid: [] for fid in flow_ids}
    if not flow_ids:
        return found
    rows = conn.execute(
        select(
            InvoiceRow.flow_id,
            InvoiceRow.seq,
            InvoiceRow.item,
            InvoiceRow.syntax,
            InvoiceRow.status,
            InvoiceRow.reason_code,
            InvoiceRow.reason_message,
        )
        .where(InvoiceRow.flow_id.in_(flow_ids))
        .order_by(InvoiceRow.flow_id, InvoiceRow.seq)
    )
    for r in rows:
        found[r.flow_id].append(dict(r._mapping))
    return found


def get_flow(conn: Connection, partner: str, flow_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(Flow resource, flow row) of one of `partner`'s flows; None when unknown or someone else's."""
    row = conn.execute(_base_query().where(FlowRow.id == flow_id, FlowRow.partner == partner)).first()
    if row is None:
        return None
    flow, info = _split(row._mapping)
    return flow_resource(flow, info, _invoices_of(conn, [flow_id])[flow_id]), flow


def event_body(conn: Connection, flow_id: str) -> tuple[str, dict[str, Any]] | None:
    """(partner, Flow resource) of a flow, read in the caller's transaction: the body of a webhook event."""
    row = conn.execute(_base_query().where(FlowRow.id == flow_id)).first()
    if row is None:
        return None
    flow, info = _split(row._mapping)
    return str(flow["partner"]), flow_resource(flow, info, _invoices_of(conn, [flow_id])[flow_id])


# -- search -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cursor:
    updated_at: datetime
    flow_id: str

    def encode(self) -> str:
        raw = json.dumps({"u": self.updated_at.isoformat(), "i": self.flow_id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
            updated = datetime.fromisoformat(data["u"])
            flow_id = data["i"]
            if not isinstance(flow_id, str) or updated.tzinfo is None or len(flow_id) > 64:
                raise ValueError
            updated.astimezone(UTC)
        except (ValueError, TypeError, KeyError, binascii.Error, OverflowError, UnicodeDecodeError):
            raise SearchError("cursor: not a cursor this API returned") from None
        return cls(updated, flow_id)


def parse_datetime(name: str, text: Any) -> datetime:
    if not isinstance(text, str):
        raise SearchError(f"{name}: a date-time string")
    try:
        value = datetime.fromisoformat(text.strip())
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise SearchError(f"{name}: not an ISO 8601 date-time: {text[:40]!r}") from None


def search_flows(conn: Connection, partner: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`POST /v1/flows/search` over `partner`'s flows (params already valid against SearchFlowParams).

    Criteria are ANDed, list values ORed. Results come in `updatedAt` order (then flow id); the cursor is
    the position of the last result, so a client that pages with it sees each change once.
    """
    where: Mapping[str, Any] = params["where"]
    limit = params.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit: an integer from 1 to {MAX_LIMIT}")
    criteria = [k for k, v in where.items() if v not in (None, [], "")]
    if not criteria:
        raise SearchError("where: at least one criterion is required")
    stmt = _base_query().where(FlowRow.partner == partner)
    if "updatedAfter" in where:
        stmt = stmt.where(FlowRow.state_changed_at > parse_datetime("updatedAfter", where["updatedAfter"]))
    if "updatedBefore" in where:
        stmt = stmt.where(FlowRow.state_changed_at < parse_datetime("updatedBefore", where["updatedBefore"]))
    if where.get("trackingId"):
        stmt = stmt.where(ApiFlowInfoRow.tracking_id == where["trackingId"])
    status = where.get("ackStatus")
    if status == "Pending":
        stmt = stmt.where(or_(FlowRow.ack_status.is_(None), FlowRow.ack_status.not_in(["Ok", "Error"])))
    elif status:
        stmt = stmt.where(FlowRow.ack_status == status)
    rules = where.get("processingRule") or []
    if rules:
        declared = [r for r in rules if r != "Undefined"]
        conditions = [ApiFlowInfoRow.processing_rule.in_(declared)] if declared else []
        if "Undefined" in rules:
            conditions.append(ApiFlowInfoRow.processing_rule.is_(None))
        stmt = stmt.where(or_(*conditions))
    if where.get("flowDirection") and "Out" not in where["flowDirection"]:
        stmt = stmt.where(FlowRow.id.is_(None))  # every flow a partner deposited goes Out
    keep = _resource_filter(where)
    position = Cursor.decode(params["cursor"]) if params.get("cursor") else None
    stmt = stmt.order_by(FlowRow.state_changed_at, FlowRow.id)

    results: list[dict[str, Any]] = []
    next_cursor: Cursor | None = None
    scanned = 0
    while True:
        page = stmt
        if position is not None:
            page = page.where(
                or_(
                    FlowRow.state_changed_at > position.updated_at,
                    and_(FlowRow.state_changed_at == position.updated_at, FlowRow.id > position.flow_id),
                )
            )
        rows = [_split(r._mapping) for r in conn.execute(page.limit(SCAN_BATCH))]
        invoices = _invoices_of(conn, [flow["id"] for flow, _ in rows])
        for flow, info in rows:
            scanned += 1
            position = Cursor(flow["state_changed_at"], flow["id"])
            resource = flow_resource(flow, info, invoices[flow["id"]])
            if not keep(resource):
                continue
            if len(results) == limit:  # one more match exists: there is a next page
                next_cursor = Cursor.decode(results[-1]["_cursor"])
                break
            resource["_cursor"] = position.encode()
            results.append(resource)
        if next_cursor is not None or len(rows) < SCAN_BATCH:
            break
        if scanned >= SCAN_BUDGET:  # answer with what was found; the client continues from here
            next_cursor = position
            break
    for resource in results:
        resource.pop("_cursor")
    answer: dict[str, Any] = {"limit": limit, "filters": dict(where), "results": results}
    if next_cursor is not None:
        answer["nextCursor"] = next_cursor.encode()
    return answer


def _resource_filter(where: Mapping[str, Any]) -> Callable[[dict[str, Any]], bool]:
    flow_types = set(where.get("flowType") or [])

    def keep(resource: dict[str, Any]) -> bool:
        return not flow_types or resource["flowType"] in flow_types

    return keep
