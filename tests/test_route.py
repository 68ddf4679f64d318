"""route_invoice, branch by branch, against a small in-memory directory (the store one: test_directory.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.transforms.route import (
    DEST_INC,
    DOUBLON,
    REJ_CONT_B2G,
    ROUTAGE_ERR,
    Recipient,
    RouteDecision,
    Service,
    issue_year,
    route_invoice,
    seller_key,
)

SIREN = "987654324"
SIRET = "98765432400019"
OTHER_SIRET = "98765432400027"  # same SIREN, a facility without a line of its own


@dataclass
class MemoryDirectory:
    """The DirectoryLookup protocol over a list, with the store's semantics (most specific line)."""

    lines: list[Recipient]
    calls: list[str] = field(default_factory=list)

    def by_addressing_id(self, addressing_id: str) -> Recipient | None:
        self.calls.append(f"addr:{addressing_id}")
        return next((r for r in self.lines if r.addressing_id == addressing_id), None)

    def by_siret(self, siret: str, routing_code: str | None = None) -> Recipient | None:
        self.calls.append(f"siret:{siret}/{routing_code}")
        return next((r for r in self.lines if r.siret == siret and r.routing_code == routing_code), None)

    def by_siren(self, siren: str) -> Recipient | None:
        self.calls.append(f"siren:{siren}")
        return next((r for r in self.lines if r.siren == siren and r.siret is None), None)

    def siret_known(self, siret: str) -> bool:
        return any(r.siret == siret for r in self.lines)


@dataclass
class Accepted:
    keys: set[tuple[str, str, str]] = field(default_factory=set)

    def already_accepted(self, seller: str, number: str, year: str) -> bool:
        return (seller, number, year) in self.keys


FACILITY = Recipient(
    siren=SIREN, siret=SIRET, addressing_id="987654324_FAC", name="Commune", partner="buyer",
    services=(Service("SERV-01", "Compta"), Service("SERV-02", "Travaux", active=False)),
)  # fmt: skip
ROUTING = Recipient(siren=SIREN, siret=SIRET, routing_code="CR-7", name="Compta", partner="buyer")
LEGAL_UNIT = Recipient(siren=SIREN, addressing_id=SIREN, name="Commune (siège)", partner="buyer-hq")


def summary(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "number": "F-1",
        "issue_date": "2025-03-14",
        "seller_siren": "123456782",
        "seller_siret": "12345678200010",
        "buyer_siret": SIRET,
        "buyer_siren": SIREN,
        "buyer_electronic_address": SIRET,
        "buyer_electronic_address_scheme": "0009",
        "buyer_routing_code": None,
        "service_code": "SERV-01",
        "engagement_number": "EJ-1",
    }
    base.update(overrides)
    return base


def decide(s: dict[str, Any], *lines: Recipient, accepted: Accepted | None = None) -> RouteDecision:
    return route_invoice(
        s, MemoryDirectory(list(lines or (FACILITY, ROUTING, LEGAL_UNIT))), accepted or Accepted()
    )


def assert_routed(d: RouteDecision, recipient: Recipient, matched_by: str) -> None:
    assert d.routed and d.reason_code is None and d.message is None and d.status_code is None, d
    assert d.recipient == recipient and d.matched_by == matched_by


def assert_rejected(d: RouteDecision, code: str, *words: str, status: str = "213") -> None:
    assert not d.routed and d.reason_code == code and d.status_code == status, d
    assert d.message is not None
    for word in words:
        assert word in d.message, (word, d.message)


# -- resolution --------------------------------------------------------------------------------------------
def test_by_siret() -> None:
    assert_routed(decide(summary()), FACILITY, "siret")


def test_by_electronic_address_0225_first() -> None:
    d = decide(summary(buyer_electronic_address=SIREN, buyer_electronic_address_scheme="0225"))
    assert_routed(d, LEGAL_UNIT, "electronic_address")  # the address wins over the SIRET


def test_unknown_address_falls_back_to_siret() -> None:
    directory = MemoryDirectory([FACILITY])
    d = route_invoice(
        summary(buyer_electronic_address="nobody", buyer_electronic_address_scheme="0225"),
        directory,
        Accepted(),
    )
    assert_routed(d, FACILITY, "siret")
    assert directory.calls[:2] == ["addr:nobody", f"siret:{SIRET}/None"]


def test_address_of_another_scheme_is_not_looked_up() -> None:
    directory = MemoryDirectory([FACILITY])
    d = route_invoice(summary(buyer_electronic_address="987654324_FAC"), directory, Accepted())  # scheme 0009
    assert_routed(d, FACILITY, "siret")
    assert not any(c.startswith("addr:") for c in directory.calls)


def test_siret_with_routing_code() -> None:
    assert_routed(decide(summary(buyer_routing_code="CR-7")), ROUTING, "siret+routing_code")


def test_unknown_routing_code_is_a_routing_error_221() -> None:
    d = decide(summary(buyer_routing_code="CR-404"))
    assert_rejected(d, ROUTAGE_ERR, "CR-404", "BT-46", "0224", SIRET, status="221")
    assert d.recipient == FACILITY and d.details["field"] == "BT-46"


def test_unknown_routing_code_of_a_siret_known_only_by_its_routing_codes() -> None:
    d = decide(summary(buyer_routing_code="CR-404"), ROUTING, LEGAL_UNIT)
    assert_rejected(d, ROUTAGE_ERR, "CR-404", status="221")
    assert d.recipient is None


def test_routing_code_for_a_siret_without_line_falls_back_to_siren() -> None:
    d = decide(summary(buyer_siret=OTHER_SIRET, buyer_routing_code="CR-7", buyer_electronic_address=None))
    assert_routed(d, LEGAL_UNIT, "siren")


def test_siret_without_line_falls_back_to_siren() -> None:
    assert_routed(decide(summary(buyer_siret=OTHER_SIRET)), LEGAL_UNIT, "siren")


def test_siren_derived_from_siret_when_absent() -> None:
    assert_routed(decide(summary(buyer_siret=OTHER_SIRET, buyer_siren=None)), LEGAL_UNIT, "siren")


def test_siren_only() -> None:
    assert_routed(decide(summary(buyer_siret=None, buyer_electronic_address=None)), LEGAL_UNIT, "siren")


def test_unknown_recipient() -> None:
    d = decide(summary(buyer_siret="73282932000074", buyer_siren="732829320"), FACILITY)
    assert_rejected(d, DEST_INC, "unknown", "73282932000074")
    assert d.recipient is None


def test_no_buyer_identifier_at_all() -> None:
    d = decide(summary(buyer_siret=None, buyer_siren=None, buyer_electronic_address=None))
    assert_rejected(d, DEST_INC, "no buyer identifier")


def test_inactive_recipient() -> None:
    closed = Recipient(siren=SIREN, siret=SIRET, name="Fermée", active=False, partner="buyer")
    assert_rejected(decide(summary(), closed), DEST_INC, "inactive", "Fermée")


def test_inactive_wins_over_duplicate() -> None:
    closed = Recipient(siren=SIREN, siret=SIRET, active=False, partner="buyer")
    accepted = Accepted({("siren:123456782", "F-1", "2025")})
    assert decide(summary(), closed, accepted=accepted).reason_code == DEST_INC


def test_recipient_without_partner() -> None:
    nobody = Recipient(siren=SIREN, siret=SIRET, name="Ailleurs", partner=None)
    assert_rejected(decide(summary(), nobody), DEST_INC, "no receiving partner")


# -- service code BT-10 --------------------------------------------------------------------------------------
REQUIRES_SERVICE = Recipient(
    siren=SIREN, siret=SIRET, partner="buyer", service_code_required=True,
    services=(Service("SERV-01", "Compta"), Service("SERV-02", "Travaux", active=False)),
)  # fmt: skip


def test_service_code_missing_when_required() -> None:
    d = decide(summary(service_code=None), REQUIRES_SERVICE)
    assert_rejected(d, REJ_CONT_B2G, "BT-10", "required")
    assert d.details["field"] == "BT-10" and d.recipient == REQUIRES_SERVICE


def test_blank_service_code_counts_as_missing() -> None:
    assert_rejected(decide(summary(service_code="  "), REQUIRES_SERVICE), REJ_CONT_B2G, "BT-10", "required")


def test_service_code_unknown() -> None:
    assert_rejected(
        decide(summary(service_code="NOPE"), REQUIRES_SERVICE), REJ_CONT_B2G, "BT-10", "NOPE", "unknown"
    )


def test_service_code_unknown_when_services_listed_but_not_required() -> None:
    assert_rejected(decide(summary(service_code="NOPE"), FACILITY), REJ_CONT_B2G, "BT-10", "unknown")


def test_service_code_inactive() -> None:
    assert_rejected(
        decide(summary(service_code="SERV-02"), REQUIRES_SERVICE), REJ_CONT_B2G, "BT-10", "inactive"
    )


def test_service_code_known_and_active() -> None:
    assert_routed(decide(summary(service_code="SERV-01"), REQUIRES_SERVICE), REQUIRES_SERVICE, "siret")


def test_buyer_reference_free_when_recipient_lists_no_services() -> None:
    plain = Recipient(siren=SIREN, siret=SIRET, partner="buyer")
    assert_routed(decide(summary(service_code="whatever"), plain), plain, "siret")
    assert_routed(decide(summary(service_code=None), plain), plain, "siret")


def test_required_service_with_no_service_list_rejects_any_code() -> None:
    bare = Recipient(siren=SIREN, siret=SIRET, partner="buyer", service_code_required=True)
    assert_rejected(decide(summary(service_code="X"), bare), REJ_CONT_B2G, "BT-10", "unknown")


def test_public_sphere_service_is_never_routed() -> None:
    plain = Recipient(siren=SIREN, siret=SIRET, partner="buyer")
    assert_rejected(
        decide(summary(service_code="FACTURES_PUBLIQUES"), plain), REJ_CONT_B2G, "BT-10", "public sphere"
    )


# -- engagement number BT-13 ----------------------------------------------------------------------------------
REQUIRES_EJ = Recipient(siren=SIREN, siret=SIRET, partner="buyer", engagement_required=True)


def test_engagement_missing_when_required() -> None:
    d = decide(summary(engagement_number=None), REQUIRES_EJ)
    assert_rejected(d, REJ_CONT_B2G, "BT-13", "required")
    assert d.details["field"] == "BT-13"


def test_engagement_present_when_required() -> None:
    assert_routed(decide(summary(engagement_number="EJ-9"), REQUIRES_EJ), REQUIRES_EJ, "siret")


def test_engagement_not_required() -> None:
    plain = Recipient(siren=SIREN, siret=SIRET, partner="buyer")
    assert_routed(decide(summary(engagement_number=None), plain), plain, "siret")


def test_engagement_too_long() -> None:
    plain = Recipient(siren=SIREN, siret=SIRET, partner="buyer")
    assert_rejected(decide(summary(engagement_number="E" * 51), plain), REJ_CONT_B2G, "BT-13", "50")
    assert_routed(decide(summary(engagement_number="E" * 50), plain), plain, "siret")


def test_service_problem_reported_before_engagement() -> None:
    both = Recipient(
        siren=SIREN, siret=SIRET, partner="buyer", service_code_required=True, engagement_required=True
    )
    d = decide(summary(service_code=None, engagement_number=None), both)
    assert d.details["field"] == "BT-10"


@pytest.mark.parametrize(
    ("service", "engagement", "ok"),
    [(None, None, False), ("S", None, True), (None, "EJ", True), ("S", "EJ", True)],
)
def test_service_or_engagement(service: str | None, engagement: str | None, ok: bool) -> None:
    either = Recipient(siren=SIREN, siret=SIRET, partner="buyer", service_or_engagement_required=True)
    d = decide(summary(service_code=service, engagement_number=engagement), either)
    if ok:
        assert_routed(d, either, "siret")
    else:
        assert_rejected(d, REJ_CONT_B2G, "BT-10", "BT-13")


# -- uniqueness ------------------------------------------------------------------------------------------------
def test_duplicate() -> None:
    accepted = Accepted({("siren:123456782", "F-1", "2025")})
    d = decide(summary(), accepted=accepted)
    assert_rejected(d, DOUBLON, "F-1", "2025", "BT-1")
    assert d.recipient == FACILITY  # known, but not delivered


@pytest.mark.parametrize(
    "change",
    [{"number": "F-2"}, {"issue_date": "2026-01-02"}, {"seller_siren": "732829320", "seller_siret": None}],
)
def test_not_a_duplicate(change: dict[str, Any]) -> None:
    accepted = Accepted({("siren:123456782", "F-1", "2025")})
    assert decide(summary(**change), accepted=accepted).routed


def test_no_number_no_duplicate_check() -> None:
    class Boom:
        def already_accepted(self, seller: str, number: str, year: str) -> bool:
            raise AssertionError("must not be asked")

    assert route_invoice(summary(number=None), MemoryDirectory([FACILITY]), Boom()).routed


def test_seller_key_and_year() -> None:
    assert seller_key({"seller_siren": "123456782", "seller_siret": "73282932000074"}) == "siren:123456782"
    assert (
        seller_key({"seller_siret": "12345678200010"}) == "siren:123456782"
    )  # same legal unit, any facility
    assert seller_key({"seller_siret": "ABC"}) == "siret:ABC"
    assert seller_key({"seller_vat_id": "fr32123456789"}) == "vat:FR32123456789"
    assert seller_key({"seller_name": " ACME "}) == "name:acme"
    assert seller_key({}) is None
    assert issue_year({"issue_date": "2025-03-14"}) == "2025"
    assert issue_year({"issue_date": "14/03/2025"}) is None
    assert issue_year({}) is None


def test_decision_is_pure_and_repeatable() -> None:
    directory = MemoryDirectory([FACILITY, ROUTING, LEGAL_UNIT])
    first = route_invoice(summary(), directory, Accepted())
    second = route_invoice(summary(), directory, Accepted())
    assert first == second


def test_decision_to_dict() -> None:
    routed = decide(summary()).to_dict()
    assert routed["reason_code"] is None and routed["recipient"]["siret"] == SIRET
    assert routed["recipient"]["services"][1] == {"code": "SERV-02", "name": "Travaux", "active": False}
    rejected = decide(summary(buyer_routing_code="X")).to_dict()
    assert (rejected["reason_code"], rejected["status_code"], rejected["details"]) == (
        ROUTAGE_ERR,
        "221",
        {"field": "BT-46"},
    )
