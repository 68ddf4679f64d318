"""Attachments of an invoice (BG-24 "additional supporting documents") and their checks (pure).

`list_attachments(xml)` reads BG-24 from UBL (`cac:AdditionalDocumentReference`) or CII
(`ram:AdditionalReferencedDocument`, type code 916 or carrying a file): reference (BT-122), description
(BT-123), embedded object (BT-125, with its MIME code BT-125-1 and file name BT-125-2) or external
reference (BT-124 URI). `pdf_attachments(pdf)` lists the files embedded in a Factur-X PDF beside the
invoice XML. `check_attachments(...)` returns findings with the reason codes of the 2026 "Irrecevable"
status (chorus-reference.md §3.2, status 501: `IRR_TAILLE_PJ`, `IRR_NOM_PJ`, `IRR_VID_PJ`, `IRR_EXT_DOC`);
the thresholds are Chorus Pro's (chorus-reference.md §6 "Limits": one attachment < 10 MB and not empty,
file name ≤ 50 characters with an extension, the list of accepted formats, invoice + attachments ≤ 120 MB,
of which OCA keeps ≤ 118 MB for attachments) since the 2026 thresholds are not in the stored sources
(§6, last row, [UNCONFIRMED]). The checks only read: the attachments stay inside the delivered invoice.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field
from pypdf import PdfReader

from gateway.model import Finding, Severity
from gateway.transforms.convert import CII_ROOT, UBL_ROOTS
from gateway.transforms.facturx_pdf import INVOICE_FILENAMES
from gateway.transforms.xmlsafe import parse_xml

# Reason codes of status 501 "Irrecevable" (chorus-reference.md §3.2, BR-FR-CDV-CL-09).
IRR_TAILLE_PJ = "IRR_TAILLE_PJ"  # attachment too large
IRR_NOM_PJ = "IRR_NOM_PJ"  # attachment name missing / too long / without extension / unsafe
IRR_VID_PJ = "IRR_VID_PJ"  # attachment empty
IRR_EXT_DOC = "IRR_EXT_DOC"  # attachment format (extension) not accepted, or not what it claims to be
IRR_SYNTAX = "IRR_SYNTAX"  # embedded object that is not base64

# chorus-reference.md §6 "Attachment formats" (OCA CHORUS_ALLOWED_FORMATS).
CHORUS_EXTENSIONS: tuple[str, ...] = (
    "bmp", "gif", "fax", "odt", "ppt", "tiff", "xls", "bz2", "gz", "jpeg", "p7s", "rtf", "txt", "xml", "csv",
    "gzip", "jpg", "pdf", "svg", "xhtml", "xlsx", "doc", "htm", "odp", "png", "tgz", "xlc", "zip", "docx",
    "html", "ods", "pps", "tif", "xlm", "pptx",
)  # fmt: skip
MIB = 1024 * 1024

# MIME codes EN 16931 allows for BT-125-1 (code list of BR-CL-24) and the extensions each fits.
_MIME_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "application/pdf": ("pdf",),
    "image/png": ("png",),
    "image/jpeg": ("jpg", "jpeg"),
    "text/csv": ("csv",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ("xlsx",),
    "application/vnd.oasis.opendocument.spreadsheet": ("ods",),
}
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "pdf": (b"%PDF-",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
}
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


class AttachmentLimits(BaseModel):
    """Thresholds of the attachment checks; defaults are Chorus Pro's (chorus-reference.md §6)."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(default=10 * MIB, ge=1, description="one attachment, decoded (Chorus: < 10 MB)")
    max_total_bytes: int = Field(default=118 * MIB, ge=1, description="all attachments of one invoice")
    max_name_length: int = Field(default=50, ge=1, description="file name with its extension")
    allowed_extensions: tuple[str, ...] = CHORUS_EXTENSIONS


@dataclass(frozen=True)
class Attachment:
    index: int  # 1-based, in document order
    location: str  # where it is, e.g. "AdditionalDocumentReference[2]" or "PDF:EmbeddedFiles/x.pdf"
    reference: str = ""  # BT-122
    description: str = ""  # BT-123 (BR-FR-17/18 qualifiers such as RIB, LISIBLE…)
    filename: str | None = None  # BT-125-2, or the PDF embedded file name
    mime_code: str | None = None  # BT-125-1
    content: bytes | None = None  # decoded BT-125; None for an external reference or undecodable object
    uri: str | None = None  # BT-124 external reference
    has_file: bool = False  # an embedded object or an external reference is present (not a bare reference)
    content_error: str | None = None  # why the embedded object could not be decoded


@dataclass(frozen=True)
class AttachmentFinding:
    reason_code: str
    message: str
    attachment: int  # Attachment.index; 0 = all attachments together
    location: str

    def to_finding(self) -> Finding:
        return Finding(self.reason_code, Severity.FATAL, self.message, self.location)


def _text(el: etree._Element | None) -> str:
    return " ".join(_all_text(el).split()) if el is not None else ""


def _all_text(el: etree._Element) -> str:
    return "".join(t if isinstance(t, str) else t.decode() for t in el.itertext())


def _decode(obj: etree._Element) -> tuple[bytes | None, str | None]:
    raw = _all_text(obj)
    try:
        return base64.b64decode("".join(raw.split()), validate=True), None
    except (binascii.Error, ValueError) as exc:
        return None, f"embedded object is not valid base64 ({exc})"


def _from_element(index: int, location: str, ref: etree._Element, cii: bool) -> Attachment:
    if cii:
        obj = ref.find("{*}AttachmentBinaryObject")
        uri = _text(ref.find("{*}URIID")) or None
        reference, description = _text(ref.find("{*}IssuerAssignedID")), _text(ref.find("{*}Name"))
        has_file = obj is not None or uri is not None
    else:
        att = ref.find("{*}Attachment")
        obj = att.find("{*}EmbeddedDocumentBinaryObject") if att is not None else None
        uri = _text(att.find("{*}ExternalReference/{*}URI")) if att is not None else ""
        uri = uri or None
        reference, description = _text(ref.find("{*}ID")), _text(ref.find("{*}DocumentDescription"))
        has_file = att is not None
    content, error = _decode(obj) if obj is not None else (None, None)
    return Attachment(
        index=index,
        location=location,
        reference=reference,
        description=description,
        filename=(obj.get("filename") if obj is not None else None),
        mime_code=(obj.get("mimeCode") if obj is not None else None),
        content=content,
        uri=uri,
        has_file=has_file,
        content_error=error,
    )


def list_attachments(xml: bytes) -> list[Attachment]:
    """BG-24 of a UBL or CII invoice, in document order (empty for another document)."""
    root = parse_xml(xml)
    out: list[Attachment] = []
    if root.tag in UBL_ROOTS:
        for i, ref in enumerate(root.findall("{*}AdditionalDocumentReference"), start=1):
            code = _text(ref.find("{*}DocumentTypeCode"))
            if code in ("130", "50") and ref.find("{*}Attachment") is None:
                continue  # BT-18 invoiced object / BT-17 tender reference, not a supporting document
            out.append(_from_element(len(out) + 1, f"AdditionalDocumentReference[{i}]", ref, cii=False))
    elif root.tag == CII_ROOT:
        refs = root.findall(
            "{*}SupplyChainTradeTransaction/{*}ApplicableHeaderTradeAgreement/{*}AdditionalReferencedDocument"
        )
        for i, ref in enumerate(refs, start=1):
            carries_file = ref.find("{*}AttachmentBinaryObject") is not None or _text(ref.find("{*}URIID"))
            if _text(ref.find("{*}TypeCode")) != "916" and not carries_file:
                continue
            out.append(_from_element(len(out) + 1, f"AdditionalReferencedDocument[{i}]", ref, cii=True))
    return out


def pdf_attachments(pdf: bytes) -> list[Attachment]:
    """Files embedded in a (Factur-X) PDF other than the invoice XML itself."""
    reader = PdfReader(io.BytesIO(pdf), strict=False)
    out: list[Attachment] = []
    for att in reader.attachment_list:
        if att.name.lower() in INVOICE_FILENAMES:
            continue
        out.append(
            Attachment(
                index=len(out) + 1,
                location=f"PDF:EmbeddedFiles/{att.name}",
                filename=att.name,
                content=att.content,
                has_file=True,
            )
        )
    return out


def _extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem and ext else ""


def _check_name(att: Attachment, limits: AttachmentLimits) -> list[AttachmentFinding]:
    where = f"attachment {att.index} ({att.reference or att.location})"

    def finding(code: str, message: str) -> AttachmentFinding:
        return AttachmentFinding(code, f"{where}: {message}", att.index, att.location)

    name = (att.filename or "").strip()
    if not name:
        return [finding(IRR_NOM_PJ, "file name (BT-125-2) missing")]
    found = []
    if len(name) > limits.max_name_length:
        found.append(
            finding(IRR_NOM_PJ, f"file name {name!r} longer than {limits.max_name_length} characters")
        )
    if _UNSAFE_NAME.search(name) or name.startswith("."):
        found.append(finding(IRR_NOM_PJ, f"file name {name!r} holds a path separator or control character"))
    ext = _extension(name)
    if not ext:
        found.append(finding(IRR_NOM_PJ, f"file name {name!r} has no extension"))
        return found
    allowed = {e.lower() for e in limits.allowed_extensions}
    if ext not in allowed:
        found.append(finding(IRR_EXT_DOC, f"format .{ext} of {name!r} is not accepted"))
    mime = (att.mime_code or "").strip().lower()
    if mime and mime in _MIME_EXTENSIONS and ext not in _MIME_EXTENSIONS[mime]:
        found.append(finding(IRR_EXT_DOC, f"file name {name!r} does not match its MIME code {mime}"))
    magic = _MAGIC.get(ext)
    if magic and att.content and not att.content.startswith(magic):
        found.append(finding(IRR_EXT_DOC, f"{name!r} is not a .{ext} file (content does not match)"))
    return found


def check_attachments(
    attachments: list[Attachment], limits: AttachmentLimits | None = None
) -> list[AttachmentFinding]:
    """Findings (reason code, message naming the attachment) for attachments breaking the limits."""
    limits = limits or AttachmentLimits()
    found: list[AttachmentFinding] = []
    total = 0
    for att in attachments:
        where = f"attachment {att.index} ({att.reference or att.location})"
        if not att.has_file:
            continue  # a bare reference (BT-122 only): no file to check
        if att.content_error:
            found.append(
                AttachmentFinding(IRR_SYNTAX, f"{where}: {att.content_error}", att.index, att.location)
            )
            continue
        if att.content is None:  # external reference (BT-124)
            if not att.uri:
                found.append(
                    AttachmentFinding(
                        IRR_VID_PJ, f"{where}: neither an embedded file nor a URI", att.index, att.location
                    )
                )
            continue
        size = len(att.content)
        total += size
        if size == 0:
            found.append(AttachmentFinding(IRR_VID_PJ, f"{where}: empty file", att.index, att.location))
        elif size > limits.max_bytes:
            found.append(
                AttachmentFinding(
                    IRR_TAILLE_PJ,
                    f"{where}: {size} bytes, more than {limits.max_bytes}",
                    att.index,
                    att.location,
                )
            )
        found.extend(_check_name(att, limits))
    if total > limits.max_total_bytes:
        found.append(
            AttachmentFinding(
                IRR_TAILLE_PJ,
                f"attachments total {total} bytes, more than {limits.max_total_bytes}",
                0,
                "BG-24",
            )
        )
    return found


def check_invoice_attachments(
    received: bytes, xml: bytes, limits: AttachmentLimits | None = None
) -> list[AttachmentFinding]:
    """Check BG-24 of the invoice XML and, when the invoice came as a PDF, the PDF's embedded files."""
    attachments = list_attachments(xml)
    if b"%PDF-" in received[:1024]:
        extra = pdf_attachments(received)
        attachments += [
            Attachment(
                index=len(attachments) + a.index,
                location=a.location,
                filename=a.filename,
                content=a.content,
                has_file=True,
            )
            for a in extra
        ]
    return check_attachments(attachments, limits)
