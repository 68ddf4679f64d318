"""Syntax conversion CII ⇄ UBL 2.1 (EN 16931 core) with XSLT 1.0 stylesheets (xslt/cii-to-ubl.xsl, ubl-to-cii.xsl)."""

from __future__ import annotations

from lxml import etree

from gateway.errors import IdentifyError
from gateway.transforms.xmlsafe import parse_xml
from gateway.transforms.xslt import Stylesheets

NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
NS_RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
NS_RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
NS_UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
NS_QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
UBL_ROOTS = {
    "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice",
    "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote",
}
CII_ROOT = f"{{{NS_RSM}}}CrossIndustryInvoice"


class ConversionError(IdentifyError):
    """The input cannot be converted (not the expected syntax, or the stylesheet failed)."""


class Converter:
    """CII ⇄ UBL converter; each stylesheet compiles once, on first use."""

    def __init__(self, stylesheets: Stylesheets | None = None) -> None:
        self._stylesheets = stylesheets or Stylesheets()

    def _xslt(self, name: str) -> etree.XSLT:
        return self._stylesheets.get(name)

    def _run(self, xml: bytes, expected: set[str], stylesheet: str, nsmap: dict[str, str]) -> bytes:
        root = parse_xml(xml)
        if root.tag not in expected:
            raise ConversionError(
                f"cannot convert: root element {root.tag} is not {' or '.join(sorted(expected))}"
            )
        try:
            result = self._xslt(stylesheet)(root)
        except etree.XSLTApplyError as exc:
            raise ConversionError(f"conversion failed: {exc}") from None
        out = result.getroot()
        etree.cleanup_namespaces(out, top_nsmap=nsmap)
        return bytes(etree.tostring(out, xml_declaration=True, encoding="UTF-8", pretty_print=True))

    def cii_to_ubl(self, xml: bytes) -> bytes:
        return self._run(xml, {CII_ROOT}, "cii-to-ubl.xsl", {"cac": NS_CAC, "cbc": NS_CBC})

    def ubl_to_cii(self, xml: bytes) -> bytes:
        return self._run(
            xml, UBL_ROOTS, "ubl-to-cii.xsl", {"rsm": NS_RSM, "ram": NS_RAM, "udt": NS_UDT, "qdt": NS_QDT}
        )
