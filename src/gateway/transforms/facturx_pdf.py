"""Factur-X / ZUGFeRD PDF: find the embedded invoice XML and the XMP conformance level (pypdf)."""

from __future__ import annotations

import io
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from facturx.facturx import FACTURX_FILENAME, ORDERX_FILENAME, ZUGFERD_FILENAME
from pypdf import PdfReader

from gateway.errors import IdentifyError
from gateway.resources import resource_path

# Preferred first: Factur-X, then ZUGFeRD 2.x / 1.0 (same name, case differs), then XRechnung.
INVOICE_FILENAMES = (FACTURX_FILENAME.lower(), ZUGFERD_FILENAME.lower(), "xrechnung.xml")
_LEVEL_RE = re.compile(
    rb"""(?:\w+:)?ConformanceLevel\s*(?:>\s*([^<]*?)\s*<|=\s*["']([^"']*)["'])""",
)
_XMP_SCAN_BYTES = 2_000_000


@dataclass(frozen=True)
class EmbeddedInvoice:
    filename: str  # attachment name as found in the PDF
    xml: bytes
    xmp_level: str | None  # fx:ConformanceLevel of the XMP metadata, as written


class LevelTable:
    """Guideline ID → Factur-X level, read from data/facturx-levels.toml on first use."""

    @cached_property
    def _table(self) -> dict[str, Any]:
        with open(resource_path("data", "facturx-levels.toml"), "rb") as fh:
            return tomllib.load(fh)

    def level_of(self, guideline_id: str | None) -> str | None:
        if not guideline_id:
            return None
        for rule in self._table.get("exact", []):
            if guideline_id == rule["id"]:
                return str(rule["level"])
        lowered = guideline_id.lower()
        for rule in self._table.get("contains", []):
            if rule["text"] in lowered:
                return str(rule["level"])
        return None


def normalise_level(level: str | None) -> str | None:
    """'BASIC WL', 'basicwl', 'EN16931' → a comparable upper-case form without spaces."""
    if level is None:
        return None
    return re.sub(r"[\s_-]+", "", level).upper()


def _xmp_level(reader: PdfReader) -> str | None:
    root: Any = reader.trailer["/Root"]
    metadata = root.get("/Metadata")
    if metadata is None:
        return None
    data = metadata.get_object().get_data()[:_XMP_SCAN_BYTES]
    match = _LEVEL_RE.search(data)
    if not match:
        return None
    raw = match.group(1) if match.group(1) is not None else match.group(2)
    return raw.decode("utf-8", "replace").strip() or None


def extract_invoice_xml(data: bytes, max_attachments: int, max_xml_bytes: int) -> EmbeddedInvoice:
    """Return the invoice XML embedded in a PDF, or raise IdentifyError naming what is wrong."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        attachments = list(reader.attachment_list)
        if len(attachments) > max_attachments:
            raise IdentifyError(f"PDF has more than {max_attachments} embedded files")
        by_name = {att.name.lower(): att for att in attachments}
        for wanted in INVOICE_FILENAMES:
            attachment = by_name.get(wanted)
            if attachment is None:
                continue
            declared = attachment.size
            if declared is not None and declared > max_xml_bytes:
                raise IdentifyError(
                    f"PDF embedded {attachment.name} declares {declared} bytes (limit {max_xml_bytes})"
                )
            content = attachment.content
            if len(content) > max_xml_bytes:
                raise IdentifyError(f"PDF embedded {attachment.name} is larger than {max_xml_bytes} bytes")
            return EmbeddedInvoice(attachment.name, content, _xmp_level(reader))
        if ORDERX_FILENAME in by_name:
            raise IdentifyError("PDF embeds order-x.xml: an Order-X order, not an invoice")
    except IdentifyError:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError, RecursionError…)
        detail = str(exc).strip() or type(exc).__name__
        raise IdentifyError(f"PDF cannot be read: {detail}") from None
    raise IdentifyError("PDF has no embedded factur-x.xml")
