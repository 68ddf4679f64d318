"""Routing decision for one accepted invoice: who receives it, or the business reason it is rejected.

Pure: the directory and the already-accepted invoices come in through two small protocols, implemented
over the store by `gateway.store.directory` (DirectoryStore, AcceptedInvoices).

Recipient resolution (issue 17, domain.md §5, chorus-reference.md §4.2):
1. the buyer's electronic address (BT-49) when its scheme is 0225 (the reform's addressing identifier);
2. else the buyer SIRET (BT-46/BT-47, scheme 0009), with the routing code (BT-46, scheme 0224) if given;
3. else the buyer SIREN (the legal-unit line of the directory).
The most specific directory line wins (the AFNOR directory's SIREN / SIRET / routing-code mesh).

Reason codes (chorus-reference.md §3.2, the reasons status 213 "Rejetée" accepts, CL-09):
- `DEST_INC`: recipient unknown, inactive, or served by no partner of this gateway;
- `REJ_CONT_B2G`: a public-structure (B2G) directory rule broken — service code BT-10 missing when
  required, unknown or inactive; engagement number BT-13 missing when required or over 50 characters
  (chorus-reference.md §4.1, §6); the message names the business term;
- `DOUBLON`: same seller, invoice number and year already accepted (domain.md §5);
- `ROUTAGE_ERR` with status 221 "Erreur de routage" (chorus-reference.md §3.2: 221 accepts `ROUTAGE_ERR`
  only): a routing code is given and is not one of the buyer SIRET's routing codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# chorus-reference.md §3.2 (BR-FR-CDV-CL-09)
DEST_INC = "DEST_INC"
REJ_CONT_B2G = "REJ_CONT_B2G"
DOUBLON = "DOUBLON"
ROUTAGE_ERR = "ROUTAGE_ERR"
STATUS_REJECTED = "213"  # Rejetée
STATUS_ROUTING_ERROR = "221"  # Erreur de routage

ADDRESSING_SCHEME = "0225"  # BT-49 French addressing identifier (chorus-reference.md §4.2)
SIRET_SCHEME = "0009"
ROUTING_CODE_SCHEME = "0224"
SYNTAXES = ("same", "ubl", "cii", "facturx")
ENGAGEMENT_MAX_LENGTH = 50  # chorus-reference.md §6 (EJ ≤ 50 chars)
PUBLIC_SPHERE_SERVICE = "FACTURES_PUBLIQUES"  # never routed to (chorus-reference.md §4.1)


@dataclass(frozen=True)
class Service:
    """A service of a public structure (Chorus `codeService`, carried in BT-10)."""

    code: str
    name: str = ""
    active: bool = True


@dataclass(frozen=True)
class Recipient:
    """One directory line: a legal unit (SIREN), a facility (SIRET) or a SIRET's routing code."""

    siren: str
    siret: str | None = None
    routing_code: str | None = None
    addressing_id: str | None = None
    name: str = ""
    active: bool = True
    service_code_required: bool = False
    engagement_required: bool = False
    service_or_engagement_required: bool = False
    services: tuple[Service, ...] = ()
    partner: str | None = None  # the gateway partner that receives for this recipient
    syntax: str = "same"  # same | ubl | cii | facturx

    @property
    def key(self) -> str:
        """The directory line's natural key: SIREN/SIRET/routing code (empty parts for coarser lines)."""
        return line_key(self.siren, self.siret, self.routing_code)

    def service(self, code: str) -> Service | None:
        for service in self.services:
            if service.code == code:
                return service
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "siren": self.siren,
            "siret": self.siret,
            "routing_code": self.routing_code,
            "addressing_id": self.addressing_id,
            "name": self.name,
            "active": self.active,
            "service_code_required": self.service_code_required,
            "engagement_required": self.engagement_required,
            "service_or_engagement_required": self.service_or_engagement_required,
            "services": [{"code": s.code, "name": s.name, "active": s.active} for s in self.services],
            "partner": self.partner,
            "syntax": self.syntax,
        }


def line_key(siren: str, siret: str | None, routing_code: str | None) -> str:
    return f"{siren}/{siret or ''}/{routing_code or ''}"


@dataclass(frozen=True)
class RouteDecision:
    """`reason_code` None = routed to `recipient`. `status_code` is the lifecycle status of a rejection
    (213 Rejetée, or 221 Erreur de routage); `matched_by` says which identifier found the recipient."""

    recipient: Recipient | None
    reason_code: str | None
    message: str | None
    status_code: str | None = None
    matched_by: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def routed(self) -> bool:
        return self.reason_code is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient.to_dict() if self.recipient else None,
            "reason_code": self.reason_code,
            "message": self.message,
            "status_code": self.status_code,
            "matched_by": self.matched_by,
            "details": dict(self.details),
        }


class DirectoryLookup(Protocol):
    def by_addressing_id(self, addressing_id: str) -> Recipient | None:
        """The line whose electronic address (addressing identifier) this is."""
        ...

    def by_siret(self, siret: str, routing_code: str | None = None) -> Recipient | None:
        """The SIRET's line for this routing code, or its SIRET-level line (no routing code) when None."""
        ...

    def by_siren(self, siren: str) -> Recipient | None:
        """The SIREN-level line (no SIRET) of a legal unit."""
        ...

    def siret_known(self, siret: str) -> bool:
        """True when the directory has any line for this SIRET (with or without routing code)."""
        ...


class DuplicateCheck(Protocol):
    def already_accepted(self, seller: str, number: str, year: str) -> bool:
        """True when an invoice of this seller (seller_key), number and year of issue was accepted."""
        ...


def _text(summary: Mapping[str, Any], name: str) -> str | None:
    value = summary.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def seller_key(summary: Mapping[str, Any]) -> str | None:
    """Who the seller is, for uniqueness: SIREN, else the SIRET's SIREN, else VAT id, else name."""
    siren = _text(summary, "seller_siren")
    if siren:
        return f"siren:{siren}"
    siret = _text(summary, "seller_siret")
    if siret:
        return f"siren:{siret[:9]}" if len(siret) == 14 and siret.isdigit() else f"siret:{siret}"
    vat = _text(summary, "seller_vat_id")
    if vat:
        return f"vat:{vat.upper()}"
    name = _text(summary, "seller_name")
    return f"name:{name.casefold()}" if name else None


def issue_year(summary: Mapping[str, Any]) -> str | None:
    date = _text(summary, "issue_date")
    return date[:4] if date and len(date) >= 4 and date[:4].isdigit() else None


def _reject(code: str, message: str, recipient: Recipient | None = None, **kw: Any) -> RouteDecision:
    status = STATUS_ROUTING_ERROR if code == ROUTAGE_ERR else STATUS_REJECTED
    return RouteDecision(recipient, code, message, status_code=status, **kw)


def _describe_buyer(addr: str | None, scheme: str | None, siret: str | None, siren: str | None) -> str:
    parts = []
    if addr:
        parts.append(f"electronic address {addr} (scheme {scheme or '-'})")
    if siret:
        parts.append(f"SIRET {siret}")
    if siren:
        parts.append(f"SIREN {siren}")
    return ", ".join(parts) or "no buyer identifier (BT-46, BT-47, BT-49)"


def resolve_recipient(
    summary: Mapping[str, Any], directory: DirectoryLookup
) -> tuple[Recipient | None, str | None, RouteDecision | None]:
    """(recipient, matched_by, early decision): the early decision is a routing-code error (221)."""
    addr = _text(summary, "buyer_electronic_address")
    scheme = _text(summary, "buyer_electronic_address_scheme")
    siret = _text(summary, "buyer_siret")
    routing = _text(summary, "buyer_routing_code")
    siren = _text(summary, "buyer_siren")
    if siren is None and siret and len(siret) == 14 and siret.isdigit():
        siren = siret[:9]
    if addr and scheme == ADDRESSING_SCHEME:
        found = directory.by_addressing_id(addr)
        if found is not None:
            return found, "electronic_address", None
    if siret:
        if routing:
            found = directory.by_siret(siret, routing)
            if found is not None:
                return found, "siret+routing_code", None
            if directory.siret_known(siret):
                facility = directory.by_siret(siret)
                return (
                    None,
                    None,
                    _reject(
                        ROUTAGE_ERR,
                        f"routing code {routing} (BT-46, scheme {ROUTING_CODE_SCHEME}) is not a routing code "
                        f"of the buyer SIRET {siret} in the directory",
                        facility,
                        details={"field": "BT-46"},
                    ),
                )
        else:
            found = directory.by_siret(siret)
            if found is not None:
                return found, "siret", None
    if siren:
        found = directory.by_siren(siren)
        if found is not None:
            return found, "siren", None
    return None, None, None


def route_invoice(
    summary: Mapping[str, Any], directory: DirectoryLookup, duplicates: DuplicateCheck
) -> RouteDecision:
    """Resolve the recipient of one validated invoice and apply the directory's business checks."""
    recipient, matched_by, early = resolve_recipient(summary, directory)
    if early is not None:
        return early
    if recipient is None:
        buyer = _describe_buyer(
            _text(summary, "buyer_electronic_address"),
            _text(summary, "buyer_electronic_address_scheme"),
            _text(summary, "buyer_siret"),
            _text(summary, "buyer_siren"),
        )
        return _reject(DEST_INC, f"recipient unknown in the directory: {buyer}", details={"field": "BT-46"})
    where = {"matched_by": matched_by}
    if not recipient.active:
        return _reject(
            DEST_INC, f"recipient {_name(recipient)} is inactive in the directory", recipient, **where
        )
    if not recipient.partner:
        return _reject(
            DEST_INC,
            f"recipient {_name(recipient)} has no receiving partner in this gateway",
            recipient,
            **where,
        )
    service_code = _text(summary, "service_code")
    engagement = _text(summary, "engagement_number")
    problem = _service_problem(recipient, service_code)
    if problem is None:
        problem = _engagement_problem(recipient, service_code, engagement)
    if problem is not None:
        field_name, message = problem
        return _reject(REJ_CONT_B2G, message, recipient, details={"field": field_name}, **where)
    seller = seller_key(summary)
    number = _text(summary, "number")
    year = issue_year(summary)
    if seller and number and year and duplicates.already_accepted(seller, number, year):
        return _reject(
            DOUBLON,
            f"invoice {number} (BT-1) of this seller was already accepted for year {year}",
            recipient,
            details={"field": "BT-1"},
            **where,
        )
    return RouteDecision(recipient, None, None, matched_by=matched_by)


def _name(recipient: Recipient) -> str:
    ident = recipient.siret or recipient.siren
    if recipient.routing_code:
        ident += f" / {recipient.routing_code}"
    return f"{ident} ({recipient.name})" if recipient.name else ident


def _service_problem(recipient: Recipient, code: str | None) -> tuple[str, str] | None:
    if code is None:
        if recipient.service_code_required:
            return (
                "BT-10",
                f"service code (BT-10 buyer reference) is required by recipient {_name(recipient)}",
            )
        return None
    if code == PUBLIC_SPHERE_SERVICE:
        return "BT-10", f"service code {code} (BT-10) is reserved to invoicing inside the public sphere"
    if not recipient.services and not recipient.service_code_required:
        return None  # a plain buyer reference for a recipient that lists no services
    service = recipient.service(code)
    if service is None:
        return "BT-10", f"service code {code} (BT-10) is unknown for recipient {_name(recipient)}"
    if not service.active:
        return "BT-10", f"service code {code} (BT-10) is inactive for recipient {_name(recipient)}"
    return None


def _engagement_problem(
    recipient: Recipient, service_code: str | None, engagement: str | None
) -> tuple[str, str] | None:
    if engagement is not None and len(engagement) > ENGAGEMENT_MAX_LENGTH:
        return "BT-13", f"engagement number (BT-13) is longer than {ENGAGEMENT_MAX_LENGTH} characters"
    if engagement is None and recipient.engagement_required:
        return (
            "BT-13",
            f"engagement number (BT-13 purchase order) is required by recipient {_name(recipient)}",
        )
    if engagement is None and service_code is None and recipient.service_or_engagement_required:
        return (
            "BT-10",
            f"a service code (BT-10) or an engagement number (BT-13) is required by recipient {_name(recipient)}",
        )
    return None
