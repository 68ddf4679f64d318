"""Acknowledgements: valid against the shipped XSD, Ok/Error and Chorus flow status rules, JSON twin."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from lxml import etree

from gateway.resources import resource_path
from gateway.transforms.ack_build import (
    FlowVerdict,
    InvoiceVerdict,
    LayerVerdict,
    ack_file_name,
    build_ack_json,
    build_ack_xml,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(resource_path("schemas", "ack-1.xsd"))))


def _verdict(**kw: object) -> FlowVerdict:
    base = dict(flow_id="20261124T120000000Z-abc", partner="acme", filename="batch.zip", size=10,
                sha256="0" * 64, received_at=NOW)  # fmt: skip
    base.update(kw)
    return FlowVerdict(**base)  # type: ignore[arg-type]


ACCEPTED = InvoiceVerdict(1, "a.xml", "accepted", "ubl-invoice", "urn:cen.eu:en16931:2017", {"number": "F1"}, outcome="valid",
                          layers=(LayerVerdict("xsd", "ubl-2.1-xsd", "2.1", "UBL-Invoice-2.1.xsd", "1" * 64, "passed"),))  # fmt: skip
REJECTED = InvoiceVerdict(
    2, "b.xml", "rejected", "cii", None, {"number": "F2"}, "REJ_SEMAN", "BR-CO-10: sum of lines", "invalid",
    findings=tuple({"rule_id": f"BR-{i}", "severity": "fatal", "message": "m\x01", "location": "/x", "pack": "p"} for i in range(5)),
)  # fmt: skip


def test_flow_level_rejection(schema: etree.XMLSchema) -> None:
    verdict = _verdict(reason_code="IRR_SYNTAX", reason_message="root element {urn:x}Foo is not an invoice")
    doc = etree.fromstring(build_ack_xml(verdict, NOW))
    schema.assertValid(doc)
    ns = {"a": "urn:flow-gateway:ack:1"}
    assert doc.findtext("a:Status", namespaces=ns) == "Error"
    assert doc.findtext("a:FlowStatus", namespaces=ns) == "IN_REJETE"
    assert doc.findtext("a:Details/a:Detail/a:ReasonCode", namespaces=ns) == "IRR_SYNTAX"


def test_partial_acceptance_lists_every_invoice(schema: etree.XMLSchema) -> None:
    verdict = _verdict(invoices=(ACCEPTED, REJECTED), syntax="zip", syntax_code="IN_DP_E1_ZIP")
    doc = etree.fromstring(build_ack_xml(verdict, NOW, max_findings=3))
    schema.assertValid(doc)
    ns = {"a": "urn:flow-gateway:ack:1"}
    assert doc.findtext("a:Status", namespaces=ns) == "Ok"
    assert doc.findtext("a:FlowStatus", namespaces=ns) == "IN_INTEGRE_PARTIEL"
    invoices = doc.findall("a:Invoices/a:Invoice", namespaces=ns)
    assert [i.get("status") for i in invoices] == ["Accepted", "Rejected"]
    assert len(invoices[1].findall("a:Finding", namespaces=ns)) == 3
    assert invoices[1].findtext("a:OmittedFindings", namespaces=ns) == "2"
    as_json = json.loads(build_ack_json(verdict, NOW, max_findings=3))
    assert as_json["flowStatus"] == "IN_INTEGRE_PARTIEL"
    assert as_json["counts"] == {"invoices": 2, "accepted": 1, "rejected": 1}
    assert as_json["details"][0]["reasonCode"] == "REJ_SEMAN"


def test_all_accepted_is_integrated(schema: etree.XMLSchema) -> None:
    verdict = _verdict(invoices=(ACCEPTED,))
    doc = etree.fromstring(build_ack_xml(verdict, NOW))
    schema.assertValid(doc)
    assert verdict.status == "Ok" and verdict.flow_status == "IN_INTEGRE"


def test_every_invoice_rejected_is_an_error() -> None:
    assert _verdict(invoices=(REJECTED,)).flow_status == "IN_REJETE"


def test_ack_name_is_derived_from_the_flow() -> None:
    assert ack_file_name("x.xml", "F1", "xml") == "x.xml.F1.ack.xml"
