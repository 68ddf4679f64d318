"""Summary extraction field by field (corpus UBL, CII, Factur-X PDF; generated invoices) and factory validity."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.model import InvoiceSummary, Syntax
from gateway.transforms.extract import SummaryExtractor, pick_siren, pick_siret
from gateway.transforms.identify import Identifier

from invoice_factory import BUYER_SIRET, SELLER_SIRET, ArtefactValidator, make_cii, make_ubl, shared_validator

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.exists(), reason=f"corpus not found at {CORPUS}")


@pytest.fixture(scope="session")
def validator() -> ArtefactValidator:
    return shared_validator()


@pytest.fixture(scope="module")
def extractor() -> SummaryExtractor:
    return SummaryExtractor()


def _summary(path: str) -> InvoiceSummary:
    result = Identifier().identify((CORPUS / path).read_bytes(), Path(path).name)
    return result.invoices[0].summary


# -- corpus, field by field ------------------------------------------------------------------------------------
EXAMPLE5 = dict(
    number="TOSL110", type_code="380", issue_date="2013-04-10", currency="DKK", seller_name="SellerCompany",
    seller_siret=None, seller_siren=None, seller_vat_id="NL16356706", buyer_name="Buyercompany ltd",
    buyer_siret=None, service_code="qwerty", engagement_number="PO4711",
    total_net=Decimal("4000"), total_vat=Decimal("675"), total_gross=Decimal("4675"),
    amount_due=Decimal("2337.5"), line_count=3, attachment_count=1,
)  # fmt: skip


@needs_corpus
@pytest.mark.parametrize(
    ("path", "framework"),
    [("en16931/cii/examples/CII_example5.xml", None), ("en16931/ubl/examples/ubl-tc434-example5.xml", "1")],
)
def test_twins_example5(path: str, framework: str | None) -> None:
    summary = _summary(path)
    for name, value in EXAMPLE5.items():
        assert getattr(summary, name) == value, name
    assert summary.billing_framework == framework


@needs_corpus
def test_french_ubl_extended_ctc_fr() -> None:
    s = _summary("factur-x/tests/fixtures/xml/ubl-21-extended-ctc-fr.xml")
    assert (s.number, s.type_code, s.issue_date, s.currency) == ("F124212", "380", "2026-06-17", "EUR")
    assert (s.seller_name, s.seller_siret, s.seller_siren, s.seller_vat_id) == (
        "Au bon moulin", "99999999800019", "999999998", "FR11999999998")  # fmt: skip
    assert (s.buyer_name, s.buyer_siret) == ("Ma jolie boutique SARL", "78787878400018")
    assert (s.service_code, s.engagement_number, s.billing_framework) == ("120943", "PO1242", "S1")
    assert (s.total_net, s.total_vat, s.total_gross, s.amount_due) == (
        Decimal("273"), Decimal("35.03"), Decimal("308.03"), Decimal("208.03"))  # fmt: skip
    assert (s.line_count, s.attachment_count) == (2, 0)


@needs_corpus
def test_facturx_pdf_summary() -> None:
    s = _summary("mustangproject/validator/src/test/resources/Facture_F20180027.pdf")
    assert (s.number, s.type_code, s.issue_date, s.currency) == ("F20180027", "380", "2018-12-31", "EUR")
    assert (s.seller_name, s.seller_vat_id, s.buyer_name) == ("LE FOURNISSEUR", "FR32123456789", "LE CLIENT")
    # the sample declares a 14-digit id under scheme 0002 (SIREN): a mislabelled SIRET
    assert (s.seller_siret, s.seller_siren) == ("12345678900014", "123456789")
    assert (s.service_code, s.engagement_number, s.billing_framework) == ("SERVEXEC", "PO201925478", "A1")
    assert (s.total_net, s.total_vat, s.total_gross, s.amount_due) == (
        Decimal("100"), Decimal("10"), Decimal("110"), Decimal("100"))  # fmt: skip
    assert (s.line_count, s.attachment_count) == (3, 1)


@needs_corpus
def test_basicwl_pdf_has_no_lines() -> None:
    s = _summary("mustangproject/validator/src/test/resources/validAvoir_FR_type380_BASICWL.pdf")
    assert (s.number, s.issue_date, s.line_count, s.total_gross) == (
        "AV-2017-0005",
        "2017-11-16",
        0,
        Decimal("-233.47"),
    )


# -- generated -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "syntax"), [(make_ubl, Syntax.UBL_INVOICE), (make_cii, Syntax.CII)])
def test_generated_fields(extractor: SummaryExtractor, make, syntax: Syntax) -> None:
    s = extractor.extract(make(lines=7, number="G-7", currency="USD", service_code="S9"), syntax)
    assert (s.number, s.type_code, s.issue_date, s.currency) == ("G-7", "380", "2025-03-14", "USD")
    assert (s.seller_siret, s.seller_siren, s.buyer_siret) == (SELLER_SIRET, SELLER_SIRET[:9], BUYER_SIRET)
    assert (s.service_code, s.engagement_number, s.billing_framework) == ("S9", "EJ-2025-0042", "S1")
    assert s.line_count == 7 and s.attachment_count == 0
    assert s.total_gross == s.total_net + s.total_vat == s.amount_due


def test_credit_note_fields(extractor: SummaryExtractor) -> None:
    s = extractor.extract(make_ubl(lines=2, type_code="381"), Syntax.UBL_CREDITNOTE)
    assert s.type_code == "381" and s.line_count == 2


def test_bad_amount_is_none(extractor: SummaryExtractor) -> None:
    xml = make_ubl().replace(
        b'<cbc:PayableAmount currencyID="EUR">', b'<cbc:PayableAmount currencyID="EUR">x'
    )
    assert extractor.extract(xml, Syntax.UBL_INVOICE).amount_due is None


def test_siret_siren_rules() -> None:
    assert pick_siret([("0009", "12345678200010")], []) == "12345678200010"
    assert pick_siret([("", "12345678200010")], []) == "12345678200010"
    assert pick_siret([("0002", "123456782")], [("0009", "98765432400019")]) == "98765432400019"
    assert pick_siret([("0002", "123456782")], []) is None
    assert pick_siren([("0002", "123456782")], [], None) == "123456782"
    assert pick_siren([], [], "12345678200010") == "123456782"
    assert pick_siren([], [], None) is None


def test_unknown_syntax_refused(extractor: SummaryExtractor) -> None:
    with pytest.raises(ValueError):
        extractor.extract(make_ubl(), Syntax.ZIP)


# -- the factory's invoices are valid ------------------------------------------------------------------------
@pytest.mark.parametrize("type_code", ["380", "381"])
@pytest.mark.parametrize("lines", [1, 5])
def test_factory_ubl_valid(validator: ArtefactValidator, lines: int, type_code: str) -> None:
    xml = make_ubl(lines=lines, type_code=type_code)
    assert validator.ubl_xsd_errors(xml) == []
    assert validator.ubl_rules(xml) == []


@pytest.mark.parametrize("type_code", ["380", "381"])
@pytest.mark.parametrize("lines", [1, 5])
def test_factory_cii_valid(validator: ArtefactValidator, lines: int, type_code: str) -> None:
    xml = make_cii(lines=lines, type_code=type_code)
    assert validator.xsd_errors(xml, ArtefactValidator.CII_XSD["en16931"]) == []
    assert validator.facturx_en16931_rules(xml) == []


def test_validator_can_fail(validator: ArtefactValidator) -> None:
    """The checks above are real: a broken total is caught."""
    xml = make_ubl().replace(
        b'<cbc:PayableAmount currencyID="EUR">', b'<cbc:PayableAmount currencyID="EUR">1'
    )
    assert any(f.rule_id.startswith("BR-CO") for f in validator.ubl_rules(xml))


# -- routing fields (issue 17: BT-49 electronic address, BT-46 routing code 0224, buyer SIREN, year) ----------
@pytest.mark.parametrize(("make", "syntax"), [(make_ubl, Syntax.UBL_INVOICE), (make_cii, Syntax.CII)])
def test_generated_routing_fields(extractor: SummaryExtractor, make, syntax: Syntax) -> None:
    s = extractor.extract(make(issue_date="2024-12-31"), syntax)
    assert (s.buyer_siret, s.buyer_siren) == (BUYER_SIRET, BUYER_SIRET[:9])
    assert (s.buyer_electronic_address, s.buyer_electronic_address_scheme) == (BUYER_SIRET, "0009")
    assert (s.buyer_routing_code, s.issue_year) == (None, "2024")


def test_ubl_routing_code_and_addressing_identifier(extractor: SummaryExtractor) -> None:
    xml = make_ubl().decode()
    buyer_at = xml.index("<cac:AccountingCustomerParty>")
    head, tail = xml[:buyer_at], xml[buyer_at:]
    tail = tail.replace(
        f'<cbc:EndpointID schemeID="0009">{BUYER_SIRET}</cbc:EndpointID>',
        f'<cbc:EndpointID schemeID="0225">{BUYER_SIRET[:9]}_COMPTA</cbc:EndpointID>'
        '<cac:PartyIdentification><cbc:ID schemeID="0224">CR-7</cbc:ID></cac:PartyIdentification>',
        1,
    )
    s = extractor.extract((head + tail).encode(), Syntax.UBL_INVOICE)
    assert (s.buyer_electronic_address, s.buyer_electronic_address_scheme) == (
        f"{BUYER_SIRET[:9]}_COMPTA",
        "0225",
    )
    assert (s.buyer_routing_code, s.buyer_siret) == ("CR-7", BUYER_SIRET)  # the 0224 id is not taken as SIRET
    assert s.seller_siret == SELLER_SIRET  # the seller's own ids are untouched


def test_cii_routing_code_and_addressing_identifier(extractor: SummaryExtractor) -> None:
    xml = make_cii().decode()
    buyer_at = xml.index("<ram:BuyerTradeParty>")
    head, tail = xml[:buyer_at], xml[buyer_at:]
    tail = tail.replace(
        f'<ram:GlobalID schemeID="0009">{BUYER_SIRET}</ram:GlobalID>',
        f'<ram:GlobalID schemeID="0009">{BUYER_SIRET}</ram:GlobalID><ram:GlobalID schemeID="0224">CR-8</ram:GlobalID>',
        1,
    ).replace(
        f'<ram:URIID schemeID="0009">{BUYER_SIRET}</ram:URIID>',
        f'<ram:URIID schemeID="0225">{BUYER_SIRET[:9]}</ram:URIID>',
        1,
    )
    s = extractor.extract((head + tail).encode(), Syntax.CII)
    assert (s.buyer_electronic_address, s.buyer_electronic_address_scheme) == (BUYER_SIRET[:9], "0225")
    assert (s.buyer_routing_code, s.buyer_siret, s.buyer_siren) == ("CR-8", BUYER_SIRET, BUYER_SIRET[:9])


def test_no_buyer_identifiers(extractor: SummaryExtractor) -> None:
    xml = make_ubl().decode()
    buyer_at = xml.index("<cac:AccountingCustomerParty>")
    tail = re.sub(r"<cbc:EndpointID[^>]*>[^<]*</cbc:EndpointID>", "", xml[buyer_at:], count=1)
    tail = re.sub(r"<cac:PartyIdentification>.*?</cac:PartyIdentification>", "", tail, count=1, flags=re.S)
    tail = re.sub(r'<cbc:CompanyID schemeID="0002">[^<]*</cbc:CompanyID>', "", tail, count=1)
    s = extractor.extract((xml[:buyer_at] + tail).encode(), Syntax.UBL_INVOICE)
    assert (
        s.buyer_siret
        is s.buyer_siren
        is s.buyer_electronic_address
        is s.buyer_electronic_address_scheme
        is None
    )


def test_flat_file_buyer_address() -> None:
    from gateway.samples import make_flat

    docs = Identifier().identify(make_flat(invoices=2), "batch.txt").invoices
    for doc in docs:
        s = doc.summary
        assert (s.buyer_electronic_address, s.buyer_electronic_address_scheme) == (BUYER_SIRET[:9], "0225")
        assert (s.buyer_siret, s.buyer_siren, s.issue_year) == (BUYER_SIRET, BUYER_SIRET[:9], "2025")


@needs_corpus
def test_french_corpus_routing_fields() -> None:
    s = _summary("factur-x/tests/fixtures/xml/ubl-21-extended-ctc-fr.xml")
    assert (s.buyer_electronic_address, s.buyer_electronic_address_scheme) == ("787878784", "0225")
    assert (s.buyer_siren, s.buyer_routing_code, s.issue_year) == ("787878784", None, "2026")
    c = _summary("factur-x/tests/fixtures/xml/factur-x-extended.xml")
    assert (c.buyer_siret, c.buyer_siren, c.buyer_routing_code) == ("98765432100029", "987654321", "CDROUT1")
