"""Shared value types of the gateway: no I/O, frozen dataclasses and StrEnums.

Every module exchanges these; stores and acknowledgements serialise them with `to_dict()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Syntax(StrEnum):
    UBL_INVOICE = "ubl-invoice"
    UBL_CREDITNOTE = "ubl-creditnote"
    CII = "cii"
    FACTURX_PDF = "facturx-pdf"
    ZIP = "zip"
    FLAT = "flat"
    CDAR = "cdar"  # lifecycle status message, UN/CEFACT CDAR D22B (issue 18)
    STATUS_CSV = "status-csv"  # lifecycle statuses in the gateway's CSV (issue 18)
    UNKNOWN = "unknown"


# Flows that carry invoice statuses, not invoices: their VALIDATE step applies statuses (issue 18).
LIFECYCLE_SYNTAXES: frozenset[str] = frozenset({Syntax.CDAR.value, Syntax.STATUS_CSV.value})


class Severity(StrEnum):
    FATAL = "fatal"
    WARNING = "warning"


class ReasonCode(StrEnum):
    """Stable reason codes (domain.md §3 flow-level, §4 invoice-level)."""

    EMPTY_FLOW = "IRR_VID_F"
    SYNTAX = "IRR_SYNTAX"
    TOO_LARGE = "IRR_TAILLE_F"
    DUPLICATE_FLOW = "AlreadyExistingFlow"
    SEMANTIC = "REJ_SEMAN"
    UNIQUENESS = "REJ_UNI"
    INTERNAL = "ERR_INTERNE"  # the gateway failed on this flow too often and quarantined it


@dataclass(frozen=True)
class Finding:
    """One rule finding of a validation layer (or of identification)."""

    rule_id: str
    severity: Severity
    message: str
    location: str = ""
    pack: str = ""  # rule-pack id that produced it ("" for the gateway's own checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": str(self.severity),
            "message": self.message,
            "location": self.location,
            "pack": self.pack,
        }


@dataclass(frozen=True)
class InvoiceSummary:
    """The canonical summary of one invoice, whatever its syntax (issue 3). Amounts are Decimals."""

    number: str | None = None
    type_code: str | None = None
    issue_date: str | None = None  # ISO 8601 date YYYY-MM-DD
    currency: str | None = None
    seller_name: str | None = None
    seller_siret: str | None = None
    seller_siren: str | None = None
    seller_vat_id: str | None = None
    buyer_name: str | None = None
    buyer_siret: str | None = None
    service_code: str | None = None  # BT-10
    engagement_number: str | None = None  # BT-13
    billing_framework: str | None = None  # BT-23
    total_net: Decimal | None = None
    total_vat: Decimal | None = None
    total_gross: Decimal | None = None
    amount_due: Decimal | None = None
    line_count: int = 0
    attachment_count: int = 0
    # routing (issue 17, domain.md §5, chorus-reference.md §4.2)
    buyer_siren: str | None = None  # BT-47 scheme 0002, else the buyer SIRET's first 9 digits
    buyer_electronic_address: str | None = None  # BT-49
    buyer_electronic_address_scheme: str | None = None  # BT-49-1 (0225 = French addressing identifier)
    buyer_routing_code: str | None = None  # BT-46 with scheme 0224
    issue_year: str | None = None  # from BT-2, for invoice-number uniqueness per seller and year

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out


@dataclass(frozen=True)
class InvoiceDocument:
    """One invoice carried by a flow, as XML ready for validation.

    `item` names it inside the flow: the file name for a single document, the ZIP entry name, or
    `invoice-<n>` (n from 1) for a flat-file batch. `error` is set when this item alone is unreadable
    (e.g. one broken ZIP entry): the flow goes on, the item is rejected with that finding.
    """

    item: str
    syntax: Syntax
    profile: str | None = None  # BT-24 specification identifier (CustomizationID / guideline ID)
    xml: bytes = b""
    summary: InvoiceSummary = field(default_factory=InvoiceSummary)
    container: str | None = None  # "pdf", "zip", "flat" when it came out of one
    facturx_level: str | None = None  # XMP conformance level of a Factur-X PDF
    error: Finding | None = None


@dataclass(frozen=True)
class Identification:
    """What identification found in a flow's bytes."""

    syntax: Syntax
    syntax_code: str  # Chorus-style code, e.g. IN_DP_E1_UBL_INVOICE (domain.md §1)
    profile: str | None
    invoices: tuple[InvoiceDocument, ...]
