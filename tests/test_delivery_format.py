"""Delivery in the recipient's syntax: every delivered XML passes the target XSD and the EN 16931 rules
(saxonche, as tests/test_convert.py), PDFs go out untouched, attachments (BG-24) stay in the invoice."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gateway.samples import make_cii, make_ubl
from gateway.transforms.attachments import list_attachments
from gateway.transforms.convert import Converter
from gateway.transforms.delivery_format import (
    DeliveredDocument,
    DeliveryFormatError,
    delivery_base_name,
    format_for_recipient,
)
from gateway.transforms.facturx_pdf import extract_invoice_xml

from attachment_factory import PDF_BYTES, PNG_BYTES, Spec, blank_pdf, facturx_pdf, with_attachments
from invoice_factory import ArtefactValidator, shared_validator

# ../shared beside the repository (a worktree under /work/wt/<name> finds it one level higher)
CORPUS = next(
    (
        p / "shared" / "corpus"
        for p in Path(__file__).resolve().parents[2:4]
        if (p / "shared" / "corpus").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "corpus",
)
ATTACHMENTS = [
    Spec("PJ-1", "bon_de_livraison.pdf", PDF_BYTES, description="BON_LIVRAISON"),
    Spec("PJ-2", "photo.png", PNG_BYTES, mime="image/png"),
    Spec("PJ-3", uri="https://example.org/contrat.pdf"),
]


@pytest.fixture(scope="module")
def converter() -> Converter:
    return Converter()


@pytest.fixture(scope="module")
def validator() -> ArtefactValidator:
    return shared_validator()


def received(kind: str, type_code: str = "380") -> bytes:
    if kind == "ubl":
        return with_attachments(make_ubl(lines=3, type_code=type_code), ATTACHMENTS)
    cii = with_attachments(make_cii(lines=3, type_code=type_code), ATTACHMENTS)
    return cii if kind == "cii" else facturx_pdf(cii, {"releve.csv": b"a;b\n"})


def assert_valid(validator: ArtefactValidator, doc: DeliveredDocument) -> None:
    if doc.syntax == "ubl":
        assert validator.ubl_xsd_errors(doc.data) == []
        assert validator.ubl_rules(doc.data) == []
    elif doc.syntax == "cii":
        assert validator.xsd_errors(doc.data, ArtefactValidator.CII_XSD["en16931"]) == []
        assert validator.facturx_en16931_rules(doc.data) == []
    else:
        xml = extract_invoice_xml(doc.data, 10, 10_000_000).xml
        assert validator.xsd_errors(xml, ArtefactValidator.CII_XSD["en16931"]) == []
        assert validator.facturx_en16931_rules(xml) == []


def attachments_of(doc: DeliveredDocument) -> list[tuple[str, str | None, bytes | None, str | None]]:
    xml = extract_invoice_xml(doc.data, 10, 10_000_000).xml if doc.syntax == "facturx" else doc.data
    return [(a.reference, a.filename, a.content, a.uri) for a in list_attachments(xml)]


# received, target -> delivered syntax, extension, converted, same bytes as received
MATRIX = {
    ("ubl", "same"): ("ubl", "xml", False, True),
    ("ubl", "ubl"): ("ubl", "xml", False, True),
    ("ubl", "cii"): ("cii", "xml", True, False),
    ("ubl", "facturx"): ("cii", "xml", True, False),
    ("cii", "same"): ("cii", "xml", False, True),
    ("cii", "ubl"): ("ubl", "xml", True, False),
    ("cii", "cii"): ("cii", "xml", False, True),
    ("cii", "facturx"): ("cii", "xml", False, True),
    ("pdf", "same"): ("facturx", "pdf", False, True),
    ("pdf", "ubl"): ("ubl", "xml", True, False),
    ("pdf", "cii"): ("cii", "xml", False, False),
    ("pdf", "facturx"): ("facturx", "pdf", False, True),
}


@pytest.mark.parametrize(("kind", "target"), list(MATRIX), ids=[f"{k}-to-{t}" for k, t in MATRIX])
def test_matrix(validator: ArtefactValidator, converter: Converter, kind: str, target: str) -> None:
    source = received(kind)
    doc = format_for_recipient(source, target, "FR123_INV-1", converter)
    syntax, ext, converted, same_bytes = MATRIX[(kind, target)]
    assert (doc.syntax, doc.filename, doc.converted) == (syntax, f"FR123_INV-1.{ext}", converted)
    assert doc.media_type == ("application/pdf" if ext == "pdf" else "application/xml")
    assert (doc.data == source) is same_bytes
    assert_valid(validator, doc)
    assert attachments_of(doc) == [
        ("PJ-1", "bon_de_livraison.pdf", PDF_BYTES, None),
        ("PJ-2", "photo.png", PNG_BYTES, None),
        ("PJ-3", None, None, "https://example.org/contrat.pdf"),
    ]
    if target == "facturx" and kind != "pdf":
        assert doc.note and "does not generate PDFs" in doc.note
    elif kind == "pdf" and target in ("cii", "ubl"):
        assert doc.note == "1 other file(s) embedded in the PDF are not part of the XML delivered"
    else:
        assert doc.note is None


def test_pdf_to_cii_is_the_embedded_xml(converter: Converter) -> None:
    cii = make_cii(number="FX-1")
    doc = format_for_recipient(facturx_pdf(cii), "cii", "FX-1", converter)
    assert doc.data == cii and doc.note is None


@pytest.mark.parametrize("target", ["cii", "ubl"])
def test_credit_notes(validator: ArtefactValidator, converter: Converter, target: str) -> None:
    for kind in ("ubl", "cii"):
        doc = format_for_recipient(received(kind, "381"), target, "CN-1", converter)
        assert_valid(validator, doc)


def test_refusals(converter: Converter) -> None:
    with pytest.raises(DeliveryFormatError, match="unknown recipient syntax"):
        format_for_recipient(make_ubl(), "pdf", "x", converter)
    for bad in ("../x", ".hidden", "", "a/b", "x" * 201):
        with pytest.raises(DeliveryFormatError, match="unsafe delivery file name"):
            format_for_recipient(make_ubl(), "same", bad, converter)
    with pytest.raises(DeliveryFormatError, match="root element"):
        format_for_recipient(b"<Order/>", "same", "x", converter)
    with pytest.raises(DeliveryFormatError, match="neither a PDF nor readable XML"):
        format_for_recipient(b"UNA:+.? 'UNB+", "same", "x", converter)
    with pytest.raises(DeliveryFormatError, match="cannot take the XML out of the PDF"):
        format_for_recipient(blank_pdf(), "cii", "x", converter)
    # a PDF without XML delivered "as is" would be a recipient's surprise, but identification refused it
    # long before; the formatter only reads the PDF when it must.
    assert format_for_recipient(blank_pdf(), "same", "x", converter).syntax == "facturx"


def test_base_name() -> None:
    assert delivery_base_name("123456789", "FA 2025/001", "42") == "123456789_FA_2025_001_42"
    assert delivery_base_name("..", "a", "") == "a"
    assert len(delivery_base_name("x" * 300)) == 200
    with pytest.raises(DeliveryFormatError):
        delivery_base_name("../", "")


def _corpus_pdfs() -> list[str]:
    catalog = CORPUS / "catalog.csv"
    if not catalog.exists():
        return []
    with open(catalog, newline="", encoding="utf-8") as fh:
        return [
            r["path"]
            for r in csv.DictReader(fh)
            if r["kind"] == "pdf+cii"
            and r["expect"] != "invalid"
            and not any(p in r["profile"] for p in ("extended", "basicwl", "minimum"))
        ]


@pytest.mark.corpus
@pytest.mark.parametrize("path", _corpus_pdfs())
def test_corpus_facturx(validator: ArtefactValidator, converter: Converter, path: str) -> None:
    pdf = (CORPUS / path).read_bytes()
    xml = extract_invoice_xml(pdf, 100, 50_000_000).xml
    if validator.xsd_errors(xml, ArtefactValidator.CII_XSD["en16931"]) or validator.facturx_en16931_rules(
        xml
    ):
        pytest.skip("the embedded XML fails its own XSD or EN 16931 rules")
    assert format_for_recipient(pdf, "same", "x", converter).data == pdf
    cii = format_for_recipient(pdf, "cii", "x", converter)
    assert cii.data == xml
    ubl = format_for_recipient(pdf, "ubl", "x", converter)
    assert validator.ubl_xsd_errors(ubl.data) == []
    assert [f.rule_id for f in validator.ubl_rules(ubl.data)] == []
