"""Attachment checks (BG-24) with the IRR_*_PJ reasons of chorus-reference.md §3.2 / §6, on generated UBL
and CII invoices carrying good and bad attachments, and on Factur-X PDFs with extra embedded files."""

from __future__ import annotations

import pytest

from gateway.model import Severity
from gateway.samples import make_cii, make_ubl
from gateway.transforms.attachments import (
    Attachment,
    AttachmentLimits,
    check_attachments,
    check_invoice_attachments,
    list_attachments,
    pdf_attachments,
)

from attachment_factory import PDF_BYTES, PNG_BYTES, Spec, facturx_pdf, with_attachments
from invoice_factory import ArtefactValidator, shared_validator

MAKERS = {"ubl": make_ubl, "cii": make_cii}


def codes(xml: bytes, limits: AttachmentLimits | None = None) -> list[tuple[str, int]]:
    return [(f.reason_code, f.attachment) for f in check_attachments(list_attachments(xml), limits)]


@pytest.mark.parametrize("syntax", ["ubl", "cii"])
def test_good_attachments_pass_and_are_listed(syntax: str) -> None:
    xml = with_attachments(
        MAKERS[syntax](),
        [
            Spec("PJ-1", "bon_de_livraison.pdf", PDF_BYTES, description="BON_LIVRAISON"),
            Spec("PJ-2", "photo.png", PNG_BYTES, mime="image/png"),
            Spec("PJ-3", uri="https://example.org/contrat.pdf"),
            Spec("PJ-4"),  # a bare reference (BT-122 only)
        ],
    )
    found = list_attachments(xml)
    assert [(a.reference, a.filename, a.content, a.uri) for a in found] == [
        ("PJ-1", "bon_de_livraison.pdf", PDF_BYTES, None),
        ("PJ-2", "photo.png", PNG_BYTES, None),
        ("PJ-3", None, None, "https://example.org/contrat.pdf"),
        ("PJ-4", None, None, None),
    ]
    assert found[0].description == "BON_LIVRAISON" and found[0].mime_code == "application/pdf"
    assert codes(xml) == []


@pytest.mark.parametrize("syntax", ["ubl", "cii"])
def test_generated_invoices_with_attachments_stay_valid(syntax: str) -> None:
    """The generator makes invoices the official artefacts accept: the findings below come from us."""
    validator: ArtefactValidator = shared_validator()
    xml = with_attachments(MAKERS[syntax](), [Spec("PJ-1", "annexe.pdf", PDF_BYTES)])
    if syntax == "ubl":
        assert validator.ubl_xsd_errors(xml) == [] and validator.ubl_rules(xml) == []
    else:
        assert validator.xsd_errors(xml, ArtefactValidator.CII_XSD["en16931"]) == []
        assert validator.facturx_en16931_rules(xml) == []


@pytest.mark.parametrize("syntax", ["ubl", "cii"])
def test_bad_attachments_give_their_reason(syntax: str) -> None:
    xml = with_attachments(
        MAKERS[syntax](),
        [
            Spec("empty", "vide.pdf", b""),  # 1
            Spec("big", "gros.pdf", b"%PDF-" + b"x" * 2000),  # 2 (limit lowered below)
            Spec("long", "n" * 47 + ".pdf", PDF_BYTES),  # 3: 51 characters
            Spec("noext", "annexe", PDF_BYTES, mime=None),  # 4
            Spec("exe", "virus.exe", b"MZ\x90\x00", mime=None),  # 5
            Spec("noname", None, PDF_BYTES),  # 6
            Spec("liar", "image.png", PDF_BYTES, mime="image/png"),  # 7: a PDF named .png
            Spec("mime", "tableau.csv", b"a;b\n", mime="application/pdf"),  # 8
            Spec("b64", "casse.pdf", raw_base64="%%% not base64 %%%"),  # 9
            Spec("path", "../etc/passwd.txt", b"x", mime=None),  # 10
            Spec("ok", "fine.pdf", PDF_BYTES),  # 11
        ],
    )
    limits = AttachmentLimits(max_bytes=1000)
    assert codes(xml, limits) == [
        ("IRR_VID_PJ", 1),
        ("IRR_TAILLE_PJ", 2),
        ("IRR_NOM_PJ", 3),
        ("IRR_NOM_PJ", 4),
        ("IRR_EXT_DOC", 5),
        ("IRR_NOM_PJ", 6),
        ("IRR_EXT_DOC", 7),
        ("IRR_EXT_DOC", 8),
        ("IRR_SYNTAX", 9),
        ("IRR_NOM_PJ", 10),
    ]
    messages = {f.attachment: f.message for f in check_attachments(list_attachments(xml), limits)}
    assert messages[1] == "attachment 1 (empty): empty file"
    assert "2005 bytes, more than 1000" in messages[2]
    assert "longer than 50 characters" in messages[3]
    assert "format .exe" in messages[5]
    assert "BT-125-2" in messages[6]
    finding = check_attachments(list_attachments(xml), limits)[0].to_finding()
    assert finding.rule_id == "IRR_VID_PJ" and finding.severity is Severity.FATAL


def test_default_limits_are_chorus_values() -> None:
    limits = AttachmentLimits()
    assert limits.max_bytes == 10 * 1024 * 1024 and limits.max_name_length == 50
    assert "pdf" in limits.allowed_extensions and "exe" not in limits.allowed_extensions
    # Built directly: in XML, libxml2 (without huge_tree) refuses text nodes over 10 000 000 characters, so
    # the gateway's safe parser already refuses a document embedding more than ~7.5 MB (IRR_SYNTAX).
    content = b"%PDF-" + b"0" * (10 * 1024 * 1024 - 5)
    at_limit = Attachment(1, "x", filename="big.pdf", content=content, has_file=True)
    over = Attachment(2, "y", filename="big2.pdf", content=content + b"0", has_file=True)
    assert [(f.reason_code, f.attachment) for f in check_attachments([at_limit, over])] == [
        ("IRR_TAILLE_PJ", 2)
    ]
    name_50 = with_attachments(make_ubl(), [Spec("n", "n" * 46 + ".pdf", PDF_BYTES)])
    assert codes(name_50) == []


def test_total_size_limit() -> None:
    xml = with_attachments(make_cii(), [Spec(f"p{i}", f"p{i}.pdf", b"%PDF-" + b"1" * 600) for i in range(3)])
    assert codes(xml, AttachmentLimits(max_bytes=1000, max_total_bytes=1500)) == [("IRR_TAILLE_PJ", 0)]


def test_external_reference_without_uri_is_empty() -> None:
    xml = with_attachments(make_ubl(), [Spec("ext", uri="")])
    assert codes(xml) == [("IRR_VID_PJ", 1)]


def test_facturx_pdf_embedded_files_are_checked() -> None:
    cii = with_attachments(make_cii(), [Spec("PJ-1", "annexe.pdf", PDF_BYTES)])
    pdf = facturx_pdf(cii, {"releve.csv": b"a;b\n", "programme.exe": b"MZ", "vide.txt": b""})
    assert sorted(a.filename or "" for a in pdf_attachments(pdf)) == [
        "programme.exe",
        "releve.csv",
        "vide.txt",
    ]
    found = check_invoice_attachments(pdf, cii)
    assert sorted((f.reason_code, f.location) for f in found) == [
        ("IRR_EXT_DOC", "PDF:EmbeddedFiles/programme.exe"),
        ("IRR_VID_PJ", "PDF:EmbeddedFiles/vide.txt"),
    ]
    assert check_invoice_attachments(cii, cii) == []


def test_other_documents_have_no_attachments() -> None:
    assert list_attachments(b"<other/>") == []
