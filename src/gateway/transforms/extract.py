"""Invoice summary extraction: one XSLT 1.0 stylesheet per syntax (xslt/summary-*.xsl)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from lxml import etree

from gateway.model import InvoiceSummary, Syntax
from gateway.transforms.xmlsafe import parse_xml
from gateway.transforms.xslt import Stylesheets

_STYLESHEETS = {
    Syntax.UBL_INVOICE: "summary-ubl.xsl",
    Syntax.UBL_CREDITNOTE: "summary-ubl.xsl",
    Syntax.CII: "summary-cii.xsl",
}
SIRET_SCHEME = "0009"
SIREN_SCHEME = "0002"
ROUTING_CODE_SCHEME = "0224"  # BT-46 routing code of the buyer (chorus-reference.md §4.2)
_SIRET_RE = re.compile(r"^\d{14}$")
_SIREN_RE = re.compile(r"^\d{9}$")
_TEXT_FIELDS = (
    "number",
    "type_code",
    "issue_date",
    "currency",
    "seller_name",
    "seller_vat_id",
    "buyer_name",
    "service_code",
    "engagement_number",
    "billing_framework",
)
_AMOUNT_FIELDS = ("total_net", "total_vat", "total_gross", "amount_due")


def _text(flat: etree._Element, name: str) -> str | None:
    value = flat.findtext(name)
    return value if value else None


def _amount(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _count(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def _ids(flat: etree._Element, name: str) -> list[tuple[str, str]]:
    return [(el.get("scheme", ""), el.text or "") for el in flat.iterfind(name) if el.text]


def pick_siret(legal_ids: list[tuple[str, str]], party_ids: list[tuple[str, str]]) -> str | None:
    """SIRET: a legal registration id with scheme 0009, else one of 14 digits, else a party id with scheme 0009."""
    for scheme, value in legal_ids:
        if scheme == SIRET_SCHEME:
            return value
    for _scheme, value in legal_ids:
        if _SIRET_RE.match(value):
            return value
    for scheme, value in party_ids:
        if scheme == SIRET_SCHEME:
            return value
    return None


def pick_siren(
    legal_ids: list[tuple[str, str]], party_ids: list[tuple[str, str]], siret: str | None
) -> str | None:
    """SIREN: an id with scheme 0002 (legal first), else a bare 9-digit legal id, else the SIRET's first 9 digits.

    A 14-digit id declared with scheme 0002 is a mislabelled SIRET: its first 9 digits are the SIREN.
    """
    for scheme, value in legal_ids + party_ids:
        if scheme == SIREN_SCHEME:
            return value[:9] if _SIRET_RE.match(value) else value
    for scheme, value in legal_ids:
        if scheme == "" and _SIREN_RE.match(value):
            return value
    if siret and _SIRET_RE.match(siret):
        return siret[:9]
    return None


def summary_from_flat(flat: etree._Element) -> InvoiceSummary:
    """Map the flat XML of a summary stylesheet to InvoiceSummary."""
    values: dict[str, object] = {name: _text(flat, name) for name in _TEXT_FIELDS}
    for name in _AMOUNT_FIELDS:
        values[name] = _amount(_text(flat, name))
    seller_legal, seller_ids = _ids(flat, "seller_legal_id"), _ids(flat, "seller_id")
    seller_siret = pick_siret(seller_legal, seller_ids)
    values["seller_siret"] = seller_siret
    values["seller_siren"] = pick_siren(seller_legal, seller_ids, seller_siret)
    buyer_legal, buyer_ids = _ids(flat, "buyer_legal_id"), _ids(flat, "buyer_id")
    buyer_siret = pick_siret(buyer_legal, buyer_ids)
    values["buyer_siret"] = buyer_siret
    values["buyer_siren"] = pick_siren(buyer_legal, buyer_ids, buyer_siret)
    values["buyer_routing_code"] = next((v for s, v in buyer_ids if s == ROUTING_CODE_SCHEME), None)
    endpoint = flat.find("buyer_endpoint")
    if endpoint is not None and endpoint.text:
        values["buyer_electronic_address"] = endpoint.text
        values["buyer_electronic_address_scheme"] = endpoint.get("scheme") or None
    issue_date = values["issue_date"]
    if isinstance(issue_date, str) and len(issue_date) >= 4 and issue_date[:4].isdigit():
        values["issue_year"] = issue_date[:4]
    values["line_count"] = _count(_text(flat, "line_count"))
    values["attachment_count"] = _count(_text(flat, "attachment_count"))
    return InvoiceSummary(**values)  # type: ignore[arg-type]


class SummaryExtractor:
    """Extracts InvoiceSummary from UBL / CII; stylesheets compile lazily, once per extractor."""

    def __init__(self, stylesheets: Stylesheets | None = None) -> None:
        self._stylesheets = stylesheets or Stylesheets()

    def _xslt(self, syntax: Syntax) -> etree.XSLT:
        try:
            name = _STYLESHEETS[syntax]
        except KeyError:
            raise ValueError(f"no summary stylesheet for syntax {syntax}") from None
        return self._stylesheets.get(name)

    def flat(self, root: etree._Element, syntax: Syntax) -> etree._Element:
        """The flat summary XML (also carries <profile>, the BT-24 identifier)."""
        return self._xslt(syntax)(root).getroot()

    def extract(self, xml_root_or_bytes: etree._Element | bytes, syntax: Syntax) -> InvoiceSummary:
        root = parse_xml(xml_root_or_bytes) if isinstance(xml_root_or_bytes, bytes) else xml_root_or_bytes
        return summary_from_flat(self.flat(root, syntax))
