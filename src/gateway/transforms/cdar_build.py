"""Outgoing lifecycle messages (issue 18), pure: one recorded status → one CDAR D22B message.

Field map (XP Z12-012 Annex B, chorus-reference.md §3.2; element order from the France_RFE 1.4.0 XSD):

* MDT-2 `BusinessProcessSpecifiedDocumentContextParameter/ID` = `REGULATED` (left out for the national
  concentrator, BR-FR-CDV-CL-01), MDT-3 guideline = `urn.cpro.gouv.fr:1p0:CDV:invoice`, or
  `urn.cpro.gouv.fr:1p0:CDV:einvoicingF2` for the concentrator copy (BR-FR-CDV-02: then the only recipient
  is the PPF, GlobalID schemeID 0238 = `0000`, role DFH);
* MDT-4 document id, MDT-8 creation time, MDG-9 sender = our platform (role WK);
* MDT-38/40 issuer of the status: the buyer (BY) or the seller (SE) for processing statuses, the platform
  (WK, no id) for transmission statuses (MDT-77 = 305, BR-FR-CDV-CL-02/03);
* MDT-57/59/73 recipient: the seller (SE) or the buyer (BY), with its electronic address (BR-FR-CDV-08);
* MDT-77 = 305 (transmission) or 23 (processing), MDT-78 status time;
* MDT-87 invoice number (BT-1), MDT-91 type (BT-3), MDT-100 invoice date (BT-2), MDT-105 status code,
  MDT-106 label, MDT-129 seller SIREN (role SE, BR-FR-CDV-CL-07);
* MDG-37 status detail: MDT-113 reason, reason text, MDT-124-2 sequence (BR-FR-CDV-16); for 212 an MDG-43
  characteristic `MEN` with the amount collected and its VAT rate (BR-FR-CDV-14).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from lxml import etree

from gateway.transforms.lifecycle import STATUSES, Phase
from gateway.transforms.lifecycle_in import NS_CDAR, NS_QDT, NS_RAM, NS_UDT

PROFILE_INVOICE = "urn.cpro.gouv.fr:1p0:CDV:invoice"
PROFILE_PPF = "urn.cpro.gouv.fr:1p0:CDV:einvoicingF2"
PPF_ID = "0000"  # the PPF's matricule since France_RFE 1.4.0 (was 9998), schemeID 0238
SCHEME_SIREN = "0002"
SCHEME_PLATFORM = "0238"
SCHEME_ADDRESS = "0225"
# BR-FR-04: document type codes a CDAR may reference (MDT-91); anything else is sent as 380.
DOCUMENT_TYPES = frozenset(
    [
        "380",
        "389",
        "393",
        "501",
        "386",
        "500",
        "384",
        "471",
        "472",
        "473",
        "261",
        "262",
        "381",
        "396",
        "502",
        "503",
    ]
)
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9+\-_/#]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9.\-_]")

Audience = Literal["issuer", "recipient", "ppf"]


@dataclass(frozen=True)
class Party:
    siren: str
    name: str | None = None
    address: str | None = None  # electronic address (MDT-73), the SIREN when none is known


@dataclass(frozen=True)
class OutgoingStatus:
    """A recorded status and the invoice it concerns: what a CDAR message says."""

    status_id: int
    code: str
    at: datetime
    invoice_number: str
    invoice_date: str  # YYYY-MM-DD (BT-2)
    seller: Party
    buyer: Party | None
    set_by: Literal["platform", "issuer", "recipient"]
    type_code: str | None = None  # BT-3
    reason_code: str | None = None
    reason_text: str | None = None
    amount: Decimal | None = None  # 212: amount collected
    vat_rate: Decimal | None = None  # 212: its VAT rate
    currency: str = "EUR"


@dataclass(frozen=True)
class Platform:
    """Our own platform as it signs CDAR messages (MDG-9 sender, role WK)."""

    name: str = "flow-gateway"
    id: str | None = None  # platform matricule (schemeID 0238), when the gateway has one


def cdar_file_name(status: OutgoingStatus, audience: Audience) -> str:
    """Deterministic: a re-send of the same status writes the same name."""
    number = _UNSAFE_NAME.sub("_", status.invoice_number)[:80]
    return f"CDV-{status.code}_{number}_{status.status_id}{'_PPF' if audience == 'ppf' else ''}.xml"


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S")


class _Builder:
    def __init__(self) -> None:
        self.root = etree.Element(
            f"{{{NS_CDAR}}}CrossDomainAcknowledgementAndResponse",
            nsmap={"rsm": NS_CDAR, "ram": NS_RAM, "udt": NS_UDT, "qdt": NS_QDT},
        )

    @staticmethod
    def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
        prefix, _, local = tag.partition(":")
        ns = {"rsm": NS_CDAR, "ram": NS_RAM, "udt": NS_UDT, "qdt": NS_QDT}[prefix]
        el = etree.SubElement(parent, f"{{{ns}}}{local}", attrs)
        if text is not None:
            el.text = text
        return el

    def datetime(self, parent: etree._Element, tag: str, value: datetime) -> None:
        self.sub(self.sub(parent, tag), "udt:DateTimeString", _ts(value), format="204")

    def party(
        self,
        parent: etree._Element,
        tag: str,
        role: str,
        party: Party | None,
        *,
        with_id: bool,
        address: bool,
    ) -> None:
        el = self.sub(parent, tag)
        if party is not None and with_id:
            self.sub(el, "ram:GlobalID", party.siren, schemeID=SCHEME_SIREN)
        if party is not None and party.name:
            self.sub(el, "ram:Name", party.name[:200])
        self.sub(el, "ram:RoleCode", role)
        if party is not None and address:
            uri = self.sub(el, "ram:URIUniversalCommunication")
            self.sub(uri, "ram:URIID", party.address or party.siren, schemeID=SCHEME_ADDRESS)


def build_cdar(
    status: OutgoingStatus,
    audience: Audience = "issuer",
    *,
    platform: Platform | None = None,
    created_at: datetime | None = None,
) -> bytes:
    """The CDAR message telling `audience` (the invoice's issuer, its recipient, or the PPF) the status."""
    definition = STATUSES.get(status.code)
    if definition is None:
        raise ValueError(f"status {status.code!r} is not one the gateway sends")
    if audience == "recipient" and status.buyer is None:
        raise ValueError("no buyer to address the message to")
    platform = platform or Platform()
    created_at = created_at or datetime.now(UTC)
    ppf = audience == "ppf"
    transmission = definition.phase is Phase.TRANSMISSION
    b = _Builder()
    sub = b.sub

    context = sub(b.root, "rsm:ExchangedDocumentContext")
    if not ppf:
        sub(sub(context, "ram:BusinessProcessSpecifiedDocumentContextParameter"), "ram:ID", "REGULATED")
    sub(
        sub(context, "ram:GuidelineSpecifiedDocumentContextParameter"),
        "ram:ID",
        PROFILE_PPF if ppf else PROFILE_INVOICE,
    )

    doc = sub(b.root, "rsm:ExchangedDocument")
    number = _UNSAFE_ID.sub("_", status.invoice_number)[:100]
    sub(doc, "ram:ID", f"{number}_{status.code}_{_ts(status.at)}_{status.status_id}{'_PPF' if ppf else ''}")
    sub(doc, "ram:Name", f"CDV-{status.code} {definition.label_fr}")
    b.datetime(doc, "ram:IssueDateTime", created_at)
    sender = sub(doc, "ram:SenderTradeParty")
    if platform.id:
        sub(sender, "ram:GlobalID", platform.id, schemeID=SCHEME_PLATFORM)
    sub(sender, "ram:Name", platform.name[:200])
    sub(sender, "ram:RoleCode", "WK")
    if transmission:
        issuer = sub(doc, "ram:IssuerTradeParty")  # the platform: no id for MDT-77 = 305 (BR-FR-CDV-07)
        sub(issuer, "ram:Name", platform.name[:200])
        sub(issuer, "ram:RoleCode", "WK")
    elif status.set_by == "recipient":
        b.party(
            doc, "ram:IssuerTradeParty", "BY", status.buyer, with_id=status.buyer is not None, address=False
        )
    else:
        b.party(doc, "ram:IssuerTradeParty", "SE", status.seller, with_id=True, address=False)
    if ppf:
        ppf_party = sub(doc, "ram:RecipientTradeParty")
        sub(ppf_party, "ram:GlobalID", PPF_ID, schemeID=SCHEME_PLATFORM)
        sub(ppf_party, "ram:Name", "PPF")
        sub(ppf_party, "ram:RoleCode", "DFH")
    elif audience == "issuer":
        b.party(doc, "ram:RecipientTradeParty", "SE", status.seller, with_id=True, address=True)
    else:
        b.party(doc, "ram:RecipientTradeParty", "BY", status.buyer, with_id=True, address=True)

    ack = sub(b.root, "rsm:AcknowledgementDocument")
    sub(sub(ack, "ram:MultipleReferencesIndicator"), "udt:Indicator", "false")
    sub(ack, "ram:TypeCode", "305" if transmission else "23")
    b.datetime(ack, "ram:IssueDateTime", status.at)
    ref = sub(ack, "ram:ReferenceReferencedDocument")
    sub(ref, "ram:IssuerAssignedID", status.invoice_number)
    type_code = status.type_code if status.type_code in DOCUMENT_TYPES else "380"
    sub(ref, "ram:TypeCode", type_code)
    if ppf:
        sub(ref, "ram:ReferenceTypeCode", PROFILE_PPF)
    formatted = sub(ref, "ram:FormattedIssueDateTime")
    sub(formatted, "qdt:DateTimeString", status.invoice_date.replace("-", ""), format="102")
    sub(ref, "ram:ProcessConditionCode", status.code)
    sub(ref, "ram:ProcessCondition", definition.label_fr)
    seller = sub(ref, "ram:IssuerTradeParty")
    sub(seller, "ram:GlobalID", status.seller.siren, schemeID=SCHEME_SIREN)
    sub(seller, "ram:RoleCode", "SE")
    if status.reason_code or status.reason_text or status.code == "212":
        detail = sub(ref, "ram:SpecifiedDocumentStatus")
        if status.reason_code:
            sub(detail, "ram:ReasonCode", status.reason_code)
        if status.reason_text:
            sub(detail, "ram:Reason", status.reason_text[:1000])
        sub(detail, "ram:SequenceNumeric", "1")
        if status.code == "212":
            if status.amount is None or status.vat_rate is None:
                raise ValueError("status 212 needs the amount collected and its VAT rate (BR-FR-CDV-14)")
            men = sub(detail, "ram:SpecifiedDocumentCharacteristic")
            sub(men, "ram:TypeCode", "MEN")
            sub(men, "ram:ValueAmount", _amount(status.amount), currencyID=status.currency or "EUR")
            sub(men, "ram:ValuePercent", _amount(status.vat_rate))
    data: bytes = etree.tostring(b.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


def _amount(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))
