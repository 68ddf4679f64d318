"""Add BG-24 attachments (embedded objects or external references) to generated UBL / CII invoices, and
make Factur-X PDFs (with extra embedded files) from generated CII, for the delivery tests."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from lxml import etree
from pypdf import PdfWriter

from gateway.samples import CAC, CBC, RAM
from gateway.transforms.convert import CII_ROOT, UBL_ROOTS

PDF_BYTES = b"%PDF-1.4\n% a tiny supporting document\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@dataclass(frozen=True)
class Spec:
    reference: str
    filename: str | None = None
    content: bytes | None = None
    mime: str | None = "application/pdf"
    uri: str | None = None
    description: str = "DOCUMENT_ANNEXE"
    raw_base64: str | None = None  # written as is instead of content (to make broken objects)


def _object_text(spec: Spec) -> str:
    if spec.raw_base64 is not None:
        return spec.raw_base64
    return base64.b64encode(spec.content or b"").decode()


def _set_object(el: etree._Element, spec: Spec) -> None:
    if spec.mime is not None:
        el.set("mimeCode", spec.mime)
    if spec.filename is not None:
        el.set("filename", spec.filename)
    el.text = _object_text(spec)


def with_attachments(xml: bytes, specs: list[Spec]) -> bytes:
    root = etree.fromstring(xml)
    if root.tag in UBL_ROOTS:
        anchor = root.find(f"{{{CAC}}}AccountingSupplierParty")
        assert anchor is not None
        for spec in specs:
            ref = etree.Element(f"{{{CAC}}}AdditionalDocumentReference")
            etree.SubElement(ref, f"{{{CBC}}}ID").text = spec.reference
            etree.SubElement(ref, f"{{{CBC}}}DocumentDescription").text = spec.description
            if spec.content is not None or spec.raw_base64 is not None or spec.uri is not None:
                att = etree.SubElement(ref, f"{{{CAC}}}Attachment")
                if spec.content is not None or spec.raw_base64 is not None:
                    _set_object(etree.SubElement(att, f"{{{CBC}}}EmbeddedDocumentBinaryObject"), spec)
                if spec.uri is not None:
                    ext = etree.SubElement(att, f"{{{CAC}}}ExternalReference")
                    etree.SubElement(ext, f"{{{CBC}}}URI").text = spec.uri
            anchor.addprevious(ref)
    else:
        assert root.tag == CII_ROOT
        agreement = root.find(f".//{{{RAM}}}ApplicableHeaderTradeAgreement")
        assert agreement is not None
        for spec in specs:
            ref = etree.SubElement(agreement, f"{{{RAM}}}AdditionalReferencedDocument")
            etree.SubElement(ref, f"{{{RAM}}}IssuerAssignedID").text = spec.reference
            if spec.uri is not None:
                etree.SubElement(ref, f"{{{RAM}}}URIID").text = spec.uri
            etree.SubElement(ref, f"{{{RAM}}}TypeCode").text = "916"
            etree.SubElement(ref, f"{{{RAM}}}Name").text = spec.description
            if spec.content is not None or spec.raw_base64 is not None:
                _set_object(etree.SubElement(ref, f"{{{RAM}}}AttachmentBinaryObject"), spec)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def facturx_pdf(cii: bytes, extra_files: dict[str, bytes] | None = None) -> bytes:
    from facturx import generate_from_binary

    attachments = {name: {"filedata": data} for name, data in (extra_files or {}).items()}
    return bytes(generate_from_binary(blank_pdf(), cii, check_xsd=False, attachments=attachments or None))
