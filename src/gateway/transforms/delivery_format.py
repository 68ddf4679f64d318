"""What the recipient gets: an invoice as received, in the syntax its directory entry asks for (pure).

`format_for_recipient(received, target, base_name, converter)` takes the bytes of ONE invoice as the
gateway received it (UBL or CII XML, or a Factur-X PDF; for a ZIP batch the entry's bytes; for a flat
file the CII the gateway made of it) and the recipient's `syntax` column
(`same` | `ubl` | `cii` | `facturx`, issue 17) and returns the bytes and the file name to deliver:

| received \\ target | same            | ubl                  | cii                   | facturx              |
|--------------------|-----------------|----------------------|-----------------------|----------------------|
| UBL XML            | UBL as is       | UBL as is            | converted to CII      | CII XML + note (1)   |
| CII XML            | CII as is       | converted to UBL     | CII as is             | CII XML + note (1)   |
| Factur-X PDF       | the PDF as is   | embedded CII → UBL   | embedded CII as is    | the PDF as is        |

(1) The gateway does not generate PDFs: a recipient asking for Factur-X receives the CII XML, which is the
structured part of Factur-X; `DeliveredDocument.note` says so (to be logged / shown to operators).

Attachments (BG-24) stay inside the delivered invoice: the XML is delivered whole, and the CII ⇄ UBL
stylesheets carry `AdditionalReferencedDocument` ⇄ `AdditionalDocumentReference` with their embedded
objects and URIs. A PDF delivered as its XML loses the PDF's own other embedded files (not BG-24): the note
counts them.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Literal

from facturx.facturx import FACTURX_FILENAME
from pypdf import PdfReader

from gateway.errors import IdentifyError
from gateway.transforms.convert import CII_ROOT, UBL_ROOTS, Converter
from gateway.transforms.facturx_pdf import extract_invoice_xml
from gateway.transforms.xmlsafe import parse_xml

RecipientSyntax = Literal["same", "ubl", "cii", "facturx"]
DeliveredSyntax = Literal["ubl", "cii", "facturx"]
RECIPIENT_SYNTAXES: tuple[str, ...] = ("same", "ubl", "cii", "facturx")
MEDIA_XML = "application/xml"
MEDIA_PDF = "application/pdf"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_PDF_MAX_ATTACHMENTS = 100
_PDF_MAX_XML_BYTES = 50_000_000


@dataclass(frozen=True)
class DeliveredDocument:
    data: bytes
    filename: str
    syntax: DeliveredSyntax  # what is delivered: UBL XML, CII XML or a Factur-X PDF
    media_type: str
    converted: bool  # True when the XML was converted from the other syntax
    note: str | None = None  # how the delivery differs from what the recipient asked, if it does


class DeliveryFormatError(Exception):
    """The invoice cannot be delivered in the recipient's syntax; the message says why."""


def delivery_base_name(*parts: str) -> str:
    """A deterministic, safe file base name from parts such as (seller SIREN, invoice number, invoice id):
    runs of other characters become `_`; at most 200 characters; never starts with a dot."""
    cleaned = [_UNSAFE_RUN.sub("_", p).strip("._-") for p in parts]
    name = "_".join(c for c in cleaned if c)[:200].rstrip("._-")
    if not name:
        raise DeliveryFormatError(f"no usable file name in {parts!r}")
    return name


def _received_syntax(received: bytes) -> Literal["ubl", "cii", "pdf"]:
    if b"%PDF-" in received[:1024]:
        return "pdf"
    try:
        root = parse_xml(received)
    except IdentifyError as exc:
        raise DeliveryFormatError(f"the invoice is neither a PDF nor readable XML: {exc.message}") from None
    if root.tag in UBL_ROOTS:
        return "ubl"
    if root.tag == CII_ROOT:
        return "cii"
    raise DeliveryFormatError(f"cannot deliver a document whose root element is {root.tag}")


def _is_extended(cii: bytes) -> bool:
    root = parse_xml(cii)
    guideline = root.findtext(
        "{*}ExchangedDocumentContext/{*}GuidelineSpecifiedDocumentContextParameter/{*}ID", default=""
    )
    return "extended" in guideline.lower()


def _other_pdf_files(pdf: bytes) -> int:
    try:
        names = [a.name.lower() for a in PdfReader(io.BytesIO(pdf), strict=False).attachment_list]
    except Exception:  # pypdf raises many types; extract_invoice_xml already read this PDF once
        return 0
    return sum(1 for n in names if n != FACTURX_FILENAME.lower())


def _convert(converter: Converter, xml: bytes, to: Literal["ubl", "cii"]) -> bytes:
    try:
        return converter.cii_to_ubl(xml) if to == "ubl" else converter.ubl_to_cii(xml)
    except IdentifyError as exc:
        raise DeliveryFormatError(f"conversion to {to.upper()} failed: {exc.message}") from None


def format_for_recipient(
    received: bytes, target: str, base_name: str, converter: Converter
) -> DeliveredDocument:
    """The document to deliver for one invoice (see the module's table); raises DeliveryFormatError."""
    if target not in RECIPIENT_SYNTAXES:
        raise DeliveryFormatError(
            f"unknown recipient syntax {target!r} (expected one of {RECIPIENT_SYNTAXES})"
        )
    if not _SAFE_NAME.fullmatch(base_name):
        raise DeliveryFormatError(f"unsafe delivery file name {base_name!r}")
    xml_name, pdf_name = f"{base_name}.xml", f"{base_name}.pdf"
    source = _received_syntax(received)

    if source == "pdf":
        if target in ("same", "facturx"):
            return DeliveredDocument(received, pdf_name, "facturx", MEDIA_PDF, converted=False)
        try:
            embedded = extract_invoice_xml(received, _PDF_MAX_ATTACHMENTS, _PDF_MAX_XML_BYTES).xml
        except IdentifyError as exc:
            raise DeliveryFormatError(f"cannot take the XML out of the PDF: {exc.message}") from None
        if _received_syntax(embedded) != "cii":
            raise DeliveryFormatError("the PDF's embedded XML is not a CII invoice (ZUGFeRD 1?)")
        notes = []
        others = _other_pdf_files(received)
        if others:
            notes.append(f"{others} other file(s) embedded in the PDF are not part of the XML delivered")
        if target == "cii":
            return DeliveredDocument(
                embedded, xml_name, "cii", MEDIA_XML, converted=False, note="; ".join(notes) or None
            )
        if _is_extended(embedded):
            notes.append("Factur-X EXTENDED elements beyond EN 16931 are not carried into UBL")
        return DeliveredDocument(
            _convert(converter, embedded, "ubl"),
            xml_name,
            "ubl",
            MEDIA_XML,
            converted=True,
            note="; ".join(notes) or None,
        )

    wanted: Literal["ubl", "cii"]
    note = None
    if target == "facturx":
        wanted = "cii"
        note = "recipient asks for Factur-X; the gateway does not generate PDFs: delivered the CII XML"
    elif target == "same":
        wanted = source
    else:
        wanted = "ubl" if target == "ubl" else "cii"
    if wanted == source:
        return DeliveredDocument(received, xml_name, wanted, MEDIA_XML, converted=False, note=note)
    return DeliveredDocument(
        _convert(converter, received, wanted), xml_name, wanted, MEDIA_XML, converted=True, note=note
    )
