"""Identification of a flow's syntax from its bytes (domain.md §1): XML, Factur-X PDF, ZIP batch, flat file.

`Identifier.identify` returns the invoices the flow carries, each as XML ready for validation with its
summary, or raises IdentifyError (IRR_SYNTAX) with a message naming what was wrong. Pure: no I/O beyond
reading the project's stylesheets and data files once.
"""

from __future__ import annotations

import tomllib
from functools import cached_property

from lxml import etree

from gateway.errors import IdentifyError
from gateway.model import Finding, Identification, InvoiceDocument, InvoiceSummary, Severity, Syntax
from gateway.resources import resource_path
from gateway.transforms.extract import SummaryExtractor, summary_from_flat
from gateway.transforms.facturx_pdf import LevelTable, extract_invoice_xml, normalise_level
from gateway.transforms.flatfile import FlatConverter, looks_like_flat
from gateway.transforms.lifecycle_in import cdar_profile, is_cdar, looks_like_status_csv, parse_status_csv
from gateway.transforms.limits import IdentifyLimits
from gateway.transforms.xmlsafe import parse_xml
from gateway.transforms.xslt import Stylesheets
from gateway.transforms.zipbatch import ZipLimits, read_zip

NS_UBL_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_UBL_CREDITNOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS_CII = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
NS_ZUGFERD1 = "urn:ferd:CrossIndustryDocument:invoice:1p0"
NS_CDAR = "urn:un:unece:uncefact:data:standard:CrossDomainAcknowledgementAndResponse:100"

INVOICE_ROOTS = {
    f"{{{NS_UBL_INVOICE}}}Invoice": Syntax.UBL_INVOICE,
    f"{{{NS_UBL_CREDITNOTE}}}CreditNote": Syntax.UBL_CREDITNOTE,
    f"{{{NS_CII}}}CrossIndustryInvoice": Syntax.CII,
}
RULE_SYNTAX = "GW-SYNTAX"
RULE_FACTURX_LEVEL = "GW-FX-LEVEL"
RULE_FLAT = "GW-FLAT-FIELD"
_PROLOG_SKIP = b" \t\r\n"


def _root_name(root: etree._Element) -> str:
    tag = root.tag if isinstance(root.tag, str) else "?"
    return tag


def _is_pdf(data: bytes) -> bool:
    return b"%PDF-" in data[:1024]


def _is_zip(data: bytes) -> bool:
    return data.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _is_xml(data: bytes) -> bool:
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    return data.lstrip(_PROLOG_SKIP).startswith(b"<")


def _describe_unknown(data: bytes) -> str:
    head = data.lstrip(_PROLOG_SKIP)[:8]
    if head.startswith((b"UNA", b"UNB")):
        return "EDIFACT interchange (UNA/UNB) is not accepted"
    if head.startswith(b"\x1f\x8b"):
        return "gzip/tar.gz archives are not accepted (send a ZIP)"
    return "unknown format: not XML, PDF, ZIP nor a cpp-flat-v1 flat file"


class Identifier:
    """Identifies flows; stylesheets and data files load lazily, once, then are reused."""

    def __init__(self, limits: IdentifyLimits | None = None, stylesheets: Stylesheets | None = None) -> None:
        self.limits = limits or IdentifyLimits()
        self.stylesheets = stylesheets or Stylesheets()  # one cache for summaries and flat files
        self.extractor = SummaryExtractor(self.stylesheets)
        self.levels = LevelTable()
        self.flat = FlatConverter(self.limits.flat_layout, self.stylesheets)

    @cached_property
    def _codes(self) -> dict[str, str]:
        with open(resource_path("data", "syntax-codes.toml"), "rb") as fh:
            table = tomllib.load(fh)
        return {syntax: entry["code"] for syntax, entry in table["codes"].items()}

    def syntax_code(self, syntax: Syntax) -> str:
        return self._codes[str(syntax)]

    # -- public -----------------------------------------------------------------------------------------
    def identify(self, data: bytes, filename: str) -> Identification:
        if _is_zip(data):
            return self._identify_zip(data)
        if looks_like_status_csv(data):
            return self._identify_status_csv(data, filename)
        if not _is_pdf(data) and not looks_like_flat(data) and _is_xml(data):
            root = parse_xml(data, self.limits)
            if is_cdar(root):
                return self._identify_cdar(root, data, filename)
            documents = [self._document(root, data, filename, None)]
        else:
            documents = self._identify_item(data, filename, container=None)
        first = documents[0]
        syntax = (
            Syntax.FLAT
            if first.container == "flat"
            else (Syntax.FACTURX_PDF if first.container == "pdf" else first.syntax)
        )
        return Identification(syntax, self.syntax_code(syntax), first.profile, tuple(documents))

    # -- lifecycle flows: a CDAR message or the status CSV, sent alone (issue 18) ------------------------
    def _identify_status_csv(self, data: bytes, filename: str) -> Identification:
        parse_status_csv(data)  # unreadable as a whole: IdentifyError (IRR_SYNTAX); lines are judged later
        doc = InvoiceDocument(item=filename, syntax=Syntax.STATUS_CSV, xml=data, container="status-csv")
        return Identification(Syntax.STATUS_CSV, self.syntax_code(Syntax.STATUS_CSV), None, (doc,))

    def _identify_cdar(self, root: etree._Element, data: bytes, filename: str) -> Identification:
        profile = cdar_profile(root)
        doc = InvoiceDocument(item=filename, syntax=Syntax.CDAR, profile=profile, xml=data, container="cdar")
        return Identification(Syntax.CDAR, self.syntax_code(Syntax.CDAR), profile, (doc,))

    # -- one item (a file alone, or one ZIP entry) ------------------------------------------------------
    def _identify_item(self, data: bytes, item: str, container: str | None) -> list[InvoiceDocument]:
        if _is_pdf(data):
            return [self._identify_pdf(data, item, container)]
        if looks_like_flat(data):
            return self._identify_flat(data, item, container)
        if _is_xml(data):
            root = parse_xml(data, self.limits)
            return [self._document(root, data, item, container)]
        raise IdentifyError(_describe_unknown(data))

    def classify(self, root: etree._Element) -> Syntax:
        """Syntax of an XML root, or IdentifyError naming why it is not an invoice."""
        tag = _root_name(root)
        syntax = INVOICE_ROOTS.get(tag)
        if syntax is not None:
            return syntax
        qname = etree.QName(tag) if tag != "?" else None
        if qname is not None and qname.namespace == NS_ZUGFERD1:
            raise IdentifyError("ZUGFeRD 1.0 is not accepted (CrossIndustryDocument)")
        if qname is not None and qname.localname == "CrossDomainAcknowledgementAndResponse":
            raise IdentifyError(
                f"root element {tag} is not an invoice (a CDAR lifecycle message is accepted alone, not in a batch)"
            )
        raise IdentifyError(f"root element {tag} is not an invoice")

    def _document(
        self,
        root: etree._Element,
        xml: bytes,
        item: str,
        container: str | None,
        facturx_level: str | None = None,
    ) -> InvoiceDocument:
        syntax = self.classify(root)
        flat = self.extractor.flat(root, syntax)
        profile = flat.findtext("profile") or None
        return InvoiceDocument(
            item=item,
            syntax=syntax,
            profile=profile,
            xml=xml,
            summary=summary_from_flat(flat),
            container=container,
            facturx_level=facturx_level,
        )

    def _identify_pdf(self, data: bytes, item: str, container: str | None) -> InvoiceDocument:
        embedded = extract_invoice_xml(data, self.limits.max_pdf_attachments, self.limits.max_pdf_xml_bytes)
        try:
            root = parse_xml(embedded.xml, self.limits)
            doc = self._document(root, embedded.xml, item, "pdf", embedded.xmp_level)
        except IdentifyError as exc:
            raise IdentifyError(f"PDF embedded {embedded.filename}: {exc.message}") from None
        expected = self.levels.level_of(doc.profile)
        if embedded.xmp_level is not None and normalise_level(expected) != normalise_level(
            embedded.xmp_level
        ):
            finding = Finding(
                RULE_FACTURX_LEVEL,
                Severity.FATAL,
                f"XMP fx:ConformanceLevel '{embedded.xmp_level}' does not match the profile of the embedded XML "
                f"({doc.profile or 'none'} → {expected or 'unknown level'})",
                location="XMP metadata",
            )
            doc = InvoiceDocument(**{**doc.__dict__, "error": finding})
        return doc

    def _identify_flat(self, data: bytes, item: str, container: str | None) -> list[InvoiceDocument]:
        documents = []
        for invoice in self.flat.convert(data):
            name = f"invoice-{invoice.index}" if container is None else f"{item}#invoice-{invoice.index}"
            if invoice.error is not None:
                finding = Finding(RULE_FLAT, Severity.FATAL, invoice.error, location=f"line {invoice.line}")
                documents.append(
                    InvoiceDocument(item=name, syntax=Syntax.UBL_INVOICE, container="flat", error=finding)
                )
                continue
            root = parse_xml(invoice.ubl, self.limits)
            documents.append(self._document(root, invoice.ubl, name, "flat"))
        return documents

    # -- ZIP batch -----------------------------------------------------------------------------------------
    def _identify_zip(self, data: bytes) -> Identification:
        limits = ZipLimits(
            max_entries=self.limits.max_zip_entries,
            max_uncompressed_bytes=self.limits.max_zip_uncompressed_bytes,
            max_ratio=self.limits.max_zip_ratio,
            ratio_min_bytes=self.limits.zip_ratio_min_bytes,
        )
        documents: list[InvoiceDocument] = []
        for entry in read_zip(data, limits):
            message = entry.error
            if message is None:
                if not entry.data:
                    message = "entry is empty"
                else:
                    try:
                        documents.extend(self._identify_item(entry.data, entry.name, container="zip"))
                        continue
                    except IdentifyError as exc:
                        message = exc.message
            finding = Finding(RULE_SYNTAX, Severity.FATAL, message, location=entry.name)
            documents.append(
                InvoiceDocument(
                    item=entry.name,
                    syntax=Syntax.UNKNOWN,
                    container="zip",
                    summary=InvoiceSummary(),
                    error=finding,
                )
            )
        profiles = {doc.profile for doc in documents if doc.error is None}
        profile = profiles.pop() if len(profiles) == 1 else None
        return Identification(Syntax.ZIP, self.syntax_code(Syntax.ZIP), profile, tuple(documents))
