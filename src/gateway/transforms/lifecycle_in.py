"""Incoming lifecycle flows (issue 18), pure: recognise them and read them into status lines.

Two formats:

* a CDAR D22B message (`CrossDomainAcknowledgementAndResponse`, chorus-reference.md §3.2): one status line
  per `AcknowledgementDocument/ReferenceReferencedDocument` — MDT-87 invoice number, MDT-100 invoice date,
  MDT-129 seller id, MDT-105 status code, MDT-113 reason, MDT-78 status date, MDG-43 `MEN` amount and rate;
* the gateway's status CSV, UTF-8, `;`-separated, with this header line:
  `invoice_number;seller_siret;status_code;date;reason_code;reason_text` and two optional columns
  `amount;vat_rate` (the amount collected and its VAT rate, for 212).

A line that cannot be read carries `error` (the others go on); a flow that cannot be read at all raises
IdentifyError like any unreadable flow.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from lxml import etree

from gateway.errors import IdentifyError

NS_CDAR = "urn:un:unece:uncefact:data:standard:CrossDomainAcknowledgementAndResponse:100"
NS_RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
NS_UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
NS_QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
CDAR_ROOT = f"{{{NS_CDAR}}}CrossDomainAcknowledgementAndResponse"
NS = {"rsm": NS_CDAR, "ram": NS_RAM, "udt": NS_UDT, "qdt": NS_QDT}

CSV_COLUMNS = ("invoice_number", "seller_siret", "status_code", "date", "reason_code", "reason_text")
CSV_OPTIONAL = ("amount", "vat_rate")
CSV_HEADER = ";".join(CSV_COLUMNS).encode()
UTF8_BOM = b"\xef\xbb\xbf"
MAX_TEXT = 1000  # reason texts are kept up to this many characters


@dataclass(frozen=True)
class StatusLine:
    """One status a lifecycle flow asks for."""

    seq: int
    item: str  # "line 3" (CSV) or "document 1" (CDAR)
    code: str = ""
    invoice_number: str | None = None
    seller_id: str | None = None  # SIRET (14 digits) or SIREN (9 digits)
    invoice_date: str | None = None  # YYYY-MM-DD
    at: datetime | None = None  # when the status was set, as the sender says
    reason_code: str | None = None
    reason_text: str | None = None
    amount: Decimal | None = None
    vat_rate: Decimal | None = None
    currency: str | None = None
    b2g: bool = False  # CDAR sender GlobalID 0238 = 9999: a public buyer (210's B2G reasons apply)
    error: str | None = None  # unreadable line: refused with this message

    def summary(self) -> dict[str, str | None]:
        return {
            "invoice_number": self.invoice_number,
            "seller_id": self.seller_id,
            "invoice_date": self.invoice_date,
            "status_code": self.code or None,
            "reason_code": self.reason_code,
            "date": self.at.isoformat() if self.at else None,
            "amount": None if self.amount is None else str(self.amount),
            "vat_rate": None if self.vat_rate is None else str(self.vat_rate),
        }


# -- recognising ------------------------------------------------------------------------------------
def looks_like_status_csv(data: bytes) -> bool:
    body = data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data
    first = body.split(b"\n", 1)[0].strip().lower()
    return first.startswith(CSV_HEADER)


def is_cdar(root: etree._Element) -> bool:
    return bool(root.tag == CDAR_ROOT)


def cdar_profile(root: etree._Element) -> str | None:
    """MDT-3, the guideline (`urn.cpro.gouv.fr:1p0:CDV:invoice` or `…:einvoicingF2`)."""
    value = root.findtext(
        "rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID", namespaces=NS
    )
    return value.strip() if value else None


# -- CSV --------------------------------------------------------------------------------------------
def parse_status_csv(data: bytes) -> list[StatusLine]:
    body = data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IdentifyError(f"status CSV is not UTF-8: {exc.reason} at byte {exc.start}") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"')
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise IdentifyError("status CSV is empty") from None
    except csv.Error as exc:
        raise IdentifyError(f"status CSV header unreadable: {exc}") from None
    expected = list(CSV_COLUMNS)
    if header[: len(expected)] != expected or header[len(expected) :] not in (
        [],
        ["amount"],
        list(CSV_OPTIONAL),
    ):
        raise IdentifyError(f"status CSV header must be {';'.join(CSV_COLUMNS)}[;amount;vat_rate]")
    lines: list[StatusLine] = []
    try:
        for fields in reader:
            line_no = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            lines.append(_csv_line(len(lines) + 1, line_no, fields, len(header)))
    except csv.Error as exc:
        raise IdentifyError(f"status CSV unreadable at line {reader.line_num}: {exc}") from None
    if not lines:
        raise IdentifyError("status CSV holds no status line")
    return lines


def _csv_line(seq: int, line_no: int, fields: list[str], width: int) -> StatusLine:
    item = f"line {line_no}"
    if len(fields) != width:
        return StatusLine(seq, item, error=f"{len(fields)} fields where the header has {width}")
    values = [f.strip() for f in fields] + [""] * (len(CSV_COLUMNS) + len(CSV_OPTIONAL) - width)
    number, seller, code, when, reason, text, amount, rate = values
    problems = []
    if not number:
        problems.append("invoice_number is empty")
    if not (seller.isdigit() and len(seller) in (9, 14)):
        problems.append(f"seller_siret {seller!r} is not a SIRET (14 digits) or SIREN (9 digits)")
    if not (code.isdigit() and len(code) == 3):
        problems.append(f"status_code {code!r} is not a 3-digit code")
    at = _parse_date(when)
    if at is None:
        problems.append(f"date {when!r} is not an ISO 8601 date or date-time")
    amount_value = _decimal(amount)
    rate_value = _decimal(rate)
    if amount and amount_value is None:
        problems.append(f"amount {amount!r} is not a decimal number")
    if rate and rate_value is None:
        problems.append(f"vat_rate {rate!r} is not a decimal number")
    line = StatusLine(
        seq,
        item,
        code=code,
        invoice_number=number or None,
        seller_id=seller or None,
        at=at,
        reason_code=reason or None,
        reason_text=text[:MAX_TEXT] or None,
        amount=amount_value,
        vat_rate=rate_value,
    )
    if problems:
        return StatusLine(**{**line.__dict__, "error": "; ".join(problems)})
    return line


def _parse_date(text: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _decimal(text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# -- CDAR -------------------------------------------------------------------------------------------
def _text(el: etree._Element, path: str) -> str | None:
    value = el.findtext(path, namespaces=NS)
    return value.strip() if value and value.strip() else None


def _cdar_datetime(el: etree._Element, path: str) -> datetime | None:
    """A `DateTimeString` of format 204 (YYYYMMDDHHMMSS) or 102 (YYYYMMDD), as UTC."""
    node = el.find(path, namespaces=NS)
    if node is None or not (node.text or "").strip():
        return None
    text = (node.text or "").strip()
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def parse_cdar(root: etree._Element) -> list[StatusLine]:
    """Status lines of a CDAR message (each ReferenceReferencedDocument of each AcknowledgementDocument)."""
    if not is_cdar(root):
        raise IdentifyError("not a CDAR CrossDomainAcknowledgementAndResponse message")
    sender_ids = root.findall("rsm:ExchangedDocument/ram:SenderTradeParty/ram:GlobalID", namespaces=NS)
    b2g = any(el.get("schemeID") == "0238" and (el.text or "").strip() == "9999" for el in sender_ids)
    lines: list[StatusLine] = []
    for ack in root.findall("rsm:AcknowledgementDocument", namespaces=NS):
        at = _cdar_datetime(ack, "ram:IssueDateTime/udt:DateTimeString")
        for ref in ack.findall("ram:ReferenceReferencedDocument", namespaces=NS):
            seq = len(lines) + 1
            lines.append(_cdar_line(seq, ref, at, b2g))
    if not lines:
        raise IdentifyError("CDAR message references no invoice (no ReferenceReferencedDocument)")
    return lines


def _cdar_line(seq: int, ref: etree._Element, at: datetime | None, b2g: bool) -> StatusLine:
    code = _text(ref, "ram:ProcessConditionCode") or ""
    seller_id = None
    for gid in ref.findall("ram:IssuerTradeParty/ram:GlobalID", namespaces=NS):
        value = (gid.text or "").strip()
        if gid.get("schemeID") in ("0002", "0009") and value:  # SIREN / SIRET (MDT-129)
            seller_id = value
            break
    issue = _cdar_datetime(ref, "ram:FormattedIssueDateTime/qdt:DateTimeString")
    status = ref.find("ram:SpecifiedDocumentStatus", namespaces=NS)
    reason_code = reason_text = None
    amount = rate = None
    currency = None
    if status is not None:
        reason_code = _text(status, "ram:ReasonCode")
        reason_text = _text(status, "ram:Reason")
        for char in ref.findall(
            "ram:SpecifiedDocumentStatus/ram:SpecifiedDocumentCharacteristic", namespaces=NS
        ):
            if _text(char, "ram:TypeCode") == "MEN":
                amount = _decimal(_text(char, "ram:ValueAmount"))
                rate = _decimal(_text(char, "ram:ValuePercent"))
                node = char.find("ram:ValueAmount", namespaces=NS)
                currency = node.get("currencyID") if node is not None else None
                break
    problems = []
    number = _text(ref, "ram:IssuerAssignedID")
    if not number:
        problems.append("no invoice number (MDT-87 IssuerAssignedID)")
    if not code:
        problems.append("no status code (MDT-105 ProcessConditionCode)")
    if seller_id is None:
        problems.append("no seller SIREN/SIRET (MDT-129 IssuerTradeParty/GlobalID schemeID 0002 or 0009)")
    return StatusLine(
        seq,
        f"document {seq}",
        code=code,
        invoice_number=number,
        seller_id=seller_id,
        invoice_date=issue.date().isoformat() if issue else None,
        at=at,
        reason_code=reason_code,
        reason_text=reason_text[:MAX_TEXT] if reason_text else None,
        amount=amount,
        vat_rate=rate,
        currency=currency,
        b2g=b2g,
        error="; ".join(problems) or None,
    )
