"""Outgoing CDAR messages: every status, for the issuer, the recipient and the national concentrator, passes
the official France_RFE 1.4.0 XSD and BR-FR-CDV rules with no fatal finding, and says the right things."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from gateway.model import Syntax
from gateway.transforms.cdar_build import (
    PROFILE_INVOICE,
    PROFILE_PPF,
    Audience,
    OutgoingStatus,
    Party,
    Platform,
    build_cdar,
    cdar_file_name,
)
from gateway.transforms.lifecycle import STATUSES, Phase
from gateway.transforms.lifecycle_in import NS, parse_cdar
from gateway.transforms.xmlsafe import parse_xml

from lifecycle_support import CdarValidator

REASONS = {"206": "AUTRE", "207": "TX_TVA_ERR", "208": "JUSTIF_ABS", "210": "TX_TVA_ERR", "213": "REJ_SEMAN",
           "501": "IRR_SYNTAX", "221": "ROUTAGE_ERR"}  # fmt: skip
SELLER = Party("123456782", "Vendeur SA")
BUYER = Party("987654324", "Acheteur SARL", address="987654324_STATUTS")


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdarValidator:
    return CdarValidator(tmp_path_factory.mktemp("rules"))


def status_for(code: str) -> OutgoingStatus:
    definition = STATUSES[code]
    if definition.phase is Phase.TRANSMISSION:
        set_by = "platform"
    else:
        set_by = "recipient" if "recipient" in definition.actors else "issuer"
    return OutgoingStatus(
        status_id=42,
        code=code,
        at=datetime(2026, 9, 2, 10, 30, tzinfo=UTC),
        invoice_number="F-2026/001",
        invoice_date="2026-09-01",
        seller=SELLER,
        buyer=BUYER,
        set_by=set_by,  # type: ignore[arg-type]
        type_code="380",
        reason_code=REASONS.get(code),
        reason_text="Taux de TVA erroné" if code in REASONS else None,
        amount=Decimal("1200") if code == "212" else None,
        vat_rate=Decimal("20") if code == "212" else None,
    )


CASES = [(code, audience) for code in sorted(STATUSES) for audience in ("issuer", "recipient", "ppf")]


@pytest.mark.parametrize(("code", "audience"), CASES, ids=[f"{c}-{a}" for c, a in CASES])
def test_every_status_is_valid_cdar(validator: CdarValidator, code: str, audience: Audience) -> None:
    status = status_for(code)
    xml = build_cdar(status, audience, platform=Platform("Notre PA", "0042"))
    report = validator.validate(xml)
    assert [layer.layer for layer in report.layers] == ["xsd", "br-fr-cdv"]
    assert str(report.outcome) == "valid", validator.fatal(xml)
    assert all(layer.pack_id == "br-fr-cdv" and layer.pack_version == "1.4.0" for layer in report.layers)

    root = etree.fromstring(xml)
    ref = root.find("rsm:AcknowledgementDocument/ram:ReferenceReferencedDocument", NS)
    assert ref is not None
    assert ref.findtext("ram:ProcessConditionCode", namespaces=NS) == code  # MDT-105
    assert ref.findtext("ram:ProcessCondition", namespaces=NS) == STATUSES[code].label_fr  # MDT-106
    assert ref.findtext("ram:IssuerAssignedID", namespaces=NS) == "F-2026/001"  # MDT-87
    assert ref.findtext("ram:FormattedIssueDateTime/qdt:DateTimeString", namespaces=NS) == "20260901"
    assert ref.findtext("ram:IssuerTradeParty/ram:GlobalID[@schemeID='0002']", namespaces=NS) == "123456782"
    assert ref.findtext("ram:SpecifiedDocumentStatus/ram:ReasonCode", namespaces=NS) == REASONS.get(code)
    type_code = root.findtext("rsm:AcknowledgementDocument/ram:TypeCode", namespaces=NS)
    assert type_code == ("305" if STATUSES[code].phase is Phase.TRANSMISSION else "23")  # MDT-77
    profile = root.findtext(
        "rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID", namespaces=NS
    )
    recipients = root.findall("rsm:ExchangedDocument/ram:RecipientTradeParty", NS)
    roles = [r.findtext("ram:RoleCode", namespaces=NS) for r in recipients]
    if audience == "ppf":
        assert profile == PROFILE_PPF and roles == ["DFH"]
        assert recipients[0].findtext("ram:GlobalID[@schemeID='0238']", namespaces=NS) == "0000"
    else:
        assert profile == PROFILE_INVOICE
        assert roles == (["SE"] if audience == "issuer" else ["BY"])
    issuer_role = root.findtext("rsm:ExchangedDocument/ram:IssuerTradeParty/ram:RoleCode", namespaces=NS)
    assert issuer_role == {"platform": "WK", "recipient": "BY", "issuer": "SE"}[status.set_by]

    # what we send reads back as the same status
    (line,) = parse_cdar(parse_xml(xml))
    assert (line.code, line.invoice_number, line.seller_id, line.invoice_date) == (
        code, "F-2026/001", "123456782", "2026-09-01",
    )  # fmt: skip
    assert line.reason_code == REASONS.get(code) and line.at == status.at
    if code == "212":
        assert (line.amount, line.vat_rate) == (Decimal("1200.00"), Decimal("20.00"))


def test_the_rules_do_catch_a_broken_message(validator: CdarValidator) -> None:
    """The check above can fail: a 210 without its reason breaks BR-FR-CDV-15, a 212 without MEN CDV-14."""
    xml = build_cdar(status_for("210"), "issuer")
    broken = xml.replace(b"<ram:ReasonCode>TX_TVA_ERR</ram:ReasonCode>", b"")
    assert any(f.startswith("BR-FR-CDV-15") for f in validator.fatal(broken))
    xml212 = build_cdar(status_for("212"), "issuer")
    start, end = (
        xml212.index(b"<ram:SpecifiedDocumentCharacteristic>"),
        xml212.index(b"</ram:SpecifiedDocumentCharacteristic>"),
    )
    no_men = xml212[:start] + xml212[end + len(b"</ram:SpecifiedDocumentCharacteristic>") :]
    assert any(f.startswith("BR-FR-CDV-14") for f in validator.fatal(no_men))
    assert str(validator.validate(b"<x/>").outcome) == "invalid"


def test_file_names_are_deterministic() -> None:
    status = status_for("205")
    assert cdar_file_name(status, "issuer") == "CDV-205_F-2026_001_42.xml"
    assert cdar_file_name(status, "ppf") == "CDV-205_F-2026_001_42_PPF.xml"


def test_212_without_amount_is_not_built() -> None:
    status = status_for("212")
    with pytest.raises(ValueError, match="BR-FR-CDV-14"):
        build_cdar(OutgoingStatus(**{**status.__dict__, "amount": None}), "issuer")


def test_corpus_like_validation_uses_the_plan(tmp_path: Path) -> None:
    """Syntax.CDAR has its own plan: XSD then BR-FR-CDV, both from the pack `br-fr-cdv`."""
    validator = CdarValidator(tmp_path / "rules")
    plan = validator.engine.plan(Syntax.CDAR, PROFILE_INVOICE)
    assert [(layer.name, layer.role, layer.pack_id) for layer in plan.layers] == [
        ("xsd", "xsd-cdar", "br-fr-cdv"),
        ("br-fr-cdv", "schematron-cdar", "br-fr-cdv"),
    ]
