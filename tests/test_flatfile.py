"""cpp-flat-v1 flat files (domain.md §6): parsing, encodings, quoting, errors naming line and field, UBL output."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from lxml import etree

from gateway.errors import IdentifyError
from gateway.model import Syntax
from gateway.transforms.flatfile import FlatConverter, Layout
from gateway.transforms.identify import Identifier
from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import ValidationConfig
from gateway.validation.rulepacks import RulePackRegistry

from invoice_factory import CAC, CBC, ArtefactValidator, make_flat, shared_validator


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier()


@pytest.fixture(scope="session")
def validator() -> ArtefactValidator:
    return shared_validator()


def _lines(data: bytes, encoding: str = "utf-8") -> list[str]:
    return data.decode(encoding).splitlines()


def _join(lines: list[str], encoding: str = "utf-8") -> bytes:
    return ("\n".join(lines) + "\n").encode(encoding)


def test_layout_is_data() -> None:
    layout = Layout.load("cpp-flat-v1")
    assert set(layout.records) == {"H", "F", "N", "L", "T", "Z"}
    f_fields = [f["name"] for f in sorted(layout.records["F"]["fields"], key=lambda f: f["position"])]
    assert f_fields[:3] == ["number", "type_code", "issue_date"] and f_fields[12] == "due_date"
    assert f_fields[13:] == [
        "seller_endpoint",
        "seller_endpoint_scheme",
        "buyer_endpoint",
        "buyer_endpoint_scheme",
        "preceding_invoice_number",
        "preceding_invoice_date",
    ]
    assert layout.records["N"]["after"] == ["F", "N"]


def test_batch_to_valid_ubl(identifier: Identifier, validator: ArtefactValidator) -> None:
    result = identifier.identify(
        make_flat([{"number": "A-1", "lines": 3}, {"number": "A-2", "type_code": "381"}]), "f.txt"
    )
    first, second = result.invoices
    assert (first.syntax, second.syntax) == (Syntax.UBL_INVOICE, Syntax.UBL_CREDITNOTE)
    assert first.summary.number == "A-1" and first.summary.line_count == 3
    assert second.summary.type_code == "381"
    for doc in result.invoices:
        assert doc.error is None
        assert validator.ubl_xsd_errors(doc.xml) == []
        assert validator.ubl_rules(doc.xml) == []


def test_summary_matches_records(identifier: Identifier) -> None:
    data = make_flat(
        [{"number": "S-1", "seller_name": "Dupont; Fils", "service_code": "SC1", "engagement_number": "EJ9"}]
    )
    assert b'"Dupont; Fils"' in data
    s = identifier.identify(data, "f.txt").invoices[0].summary
    assert (s.seller_name, s.service_code, s.engagement_number, s.billing_framework) == (
        "Dupont; Fils",
        "SC1",
        "EJ9",
        "S1",
    )
    total = [line for line in _lines(data) if line.startswith("T;")][0].split(";")
    assert (s.total_net, s.total_vat, s.total_gross, s.amount_due) == tuple(Decimal(v) for v in total[1:5])


def test_latin1(identifier: Identifier) -> None:
    data = make_flat([{"seller_name": "Société Générale à Noël"}], encoding="ISO-8859-1")
    assert "é".encode("latin-1") in data and "é".encode() not in data
    assert identifier.identify(data, "f.txt").invoices[0].summary.seller_name == "Société Générale à Noël"


def test_declared_utf8_but_latin1_bytes(identifier: Identifier) -> None:
    data = make_flat([{"seller_name": "Société"}], encoding="ISO-8859-1").replace(b"ISO-8859-1", b"UTF-8")
    with pytest.raises(IdentifyError, match=r"line 2: bytes are not valid UTF-8"):
        identifier.identify(data, "f.txt")


def test_unknown_encoding(identifier: Identifier) -> None:
    data = make_flat(1).replace(b"UTF-8", b"EBCDIC")
    with pytest.raises(IdentifyError, match=r"line 1, field 'encoding' \(H position 5\)"):
        identifier.identify(data, "f.txt")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ls: ls[1:], "line 1: first record must be H|unknown format"),
        (lambda ls: [ls[0].replace("cpp-flat-v1", "other")] + ls[1:], r"line 1, field 'layout'"),
        (lambda ls: ls[:-1], "trailer record Z is missing"),
        (lambda ls: ls[:-1] + ["Z;5;2"], r"field 'number of F records': 5 declared, 1 found"),
        (lambda ls: ls[:-1] + ["Z;1;9"], r"field 'number of L records': 9 declared, 2 found"),
        (lambda ls: [ls[0], ls[2]] + ls[1:], r"line 2: L record outside an invoice"),
        (lambda ls: ls[:4] + ls[5:], r"never closed|trailer before"),
        (lambda ls: ls[:2] + ["X;1"] + ls[2:], r"line 3: unknown record type 'X'"),
        (lambda ls: ls + ["F;x"], r"record after the trailer"),
    ],
)
def test_structure_errors_reject_the_flow(identifier: Identifier, mutate, message: str) -> None:
    lines = _lines(make_flat(1, french_mentions=False))
    with pytest.raises(IdentifyError, match=message):
        identifier.identify(_join(mutate(lines)), "f.txt")


@pytest.mark.parametrize(
    ("record", "position", "value", "message"),
    [
        ("F", 4, "14/03/2025", r"line 2, field 'issue date' \(F position 4\): '14/03/2025' is not a date"),
        ("F", 3, "999", r"field 'type code' \(F position 3\): '999' is not one of 380, 381"),
        ("F", 6, "123", r"field 'seller SIRET' \(F position 6\): '123' is not a SIRET"),
        ("F", 2, "", r"line 2, field 'invoice number' \(F position 2\): missing required value"),
        ("L", 4, "1,5", r"line 3, field 'quantity' \(L position 4\): '1,5' is not a decimal"),
        ("T", 5, "abc", r"field 'amount due' \(T position 5\)"),
    ],
)
def test_field_errors_reject_one_invoice(
    identifier: Identifier, record: str, position: int, value: str, message: str
) -> None:
    lines = _lines(make_flat(2, french_mentions=False))
    index = next(i for i, line in enumerate(lines) if line.startswith(record + ";"))
    fields = lines[index].split(";")
    fields[position - 1] = value
    lines[index] = ";".join(fields)
    result = identifier.identify(_join(lines), "f.txt")
    bad, good = result.invoices
    assert bad.error is not None and bad.error.rule_id == "GW-FLAT-FIELD"
    assert re.search(message, bad.error.message), bad.error.message
    assert good.error is None and good.summary.number == "FL-0002"


def test_too_many_fields(identifier: Identifier) -> None:
    lines = _lines(make_flat(1, french_mentions=False))
    lines[2] += ";extra"
    doc = identifier.identify(_join(lines), "f.txt").invoices[0]
    assert doc.error is not None and "line 3" in doc.error.message and "at most 9" in doc.error.message


def test_bom_and_crlf(identifier: Identifier) -> None:
    data = b"\xef\xbb\xbf" + make_flat(1)
    assert b"\r\n" in data
    assert identifier.identify(data, "f.txt").invoices[0].error is None


def test_converter_alone() -> None:
    out = FlatConverter().convert(make_flat(2))
    assert [inv.index for inv in out] == [1, 2] and all(inv.ubl.startswith(b"<?xml") for inv in out)


# -- layout extension: N records (notes) and electronic addresses (F positions 15-18) -----------------------
_OLD_STYLE_SPECS = [
    {"number": "A-1", "lines": 3},
    {"number": "A-2", "type_code": "381"},
    {"seller_name": 'Société; "Fils"'},
]


@pytest.fixture(scope="module")
def engine() -> ValidationEngine:
    return ValidationEngine(ValidationConfig(), RulePackRegistry(None))


def _without_extension(ubl: bytes) -> bytes:
    """The UBL minus what the extension adds (notes, endpoint ids, billing reference), serialised like the
    converter does."""
    root = etree.fromstring(ubl)
    added = root.findall(f"{{{CBC}}}Note") + root.findall(f".//{{{CBC}}}EndpointID")
    for el in added + root.findall(f"{{{CAC}}}BillingReference"):
        el.getparent().remove(el)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _reserialised(ubl: bytes) -> bytes:
    return etree.tostring(etree.fromstring(ubl), xml_declaration=True, encoding="UTF-8")


def test_old_style_file_converts_as_before() -> None:
    old = make_flat(_OLD_STYLE_SPECS, encoding="ISO-8859-1", french_mentions=False)
    records = _lines(old, "latin-1")
    assert not any(r.startswith("N;") for r in records)
    assert all(len(r.split(";")) == 14 for r in records if r.startswith("F;") and '"' not in r)
    converter = FlatConverter()
    before = converter.convert(old)
    assert [inv.error for inv in before] == [None, None, None]
    for inv in before:
        assert etree.fromstring(inv.ubl).find(f".//{{{CBC}}}EndpointID") is None
        assert etree.fromstring(inv.ubl).find(f"{{{CBC}}}Note") is None
    # empty trailing extension fields change nothing
    for padding in (";;;;", ";;;;;;"):
        padded = "\n".join(r + padding if r.startswith("F;") else r for r in records).encode("latin-1")
        assert [inv.ubl for inv in converter.convert(padded)] == [inv.ubl for inv in before]
    # the extended file gives the same UBL plus notes and endpoint ids
    new = converter.convert(make_flat(_OLD_STYLE_SPECS, encoding="ISO-8859-1"))
    assert [_without_extension(inv.ubl) for inv in new] == [_reserialised(inv.ubl) for inv in before]


def test_old_style_file_misses_the_french_mentions(identifier: Identifier, engine: ValidationEngine) -> None:
    doc = identifier.identify(make_flat(1, french_mentions=False), "f.txt").invoices[0]
    report = engine.validate(doc.xml, doc.syntax, doc.profile)
    assert report.outcome == "invalid"
    failed = {f.rule_id.split("_")[0] for f in report.fatal_findings}
    assert {"BR-FR-05", "BR-FR-12", "BR-FR-13"} <= failed


def test_french_mentions_pass_xsd_en16931_and_br_fr(identifier: Identifier, engine: ValidationEngine) -> None:
    data = make_flat([{"number": "FR-1", "lines": 3}, {"number": "FR-2"}], encoding="ISO-8859-1")
    result = identifier.identify(data, "f.txt")
    assert len(result.invoices) == 2
    for doc in result.invoices:
        assert doc.error is None and doc.syntax == Syntax.UBL_INVOICE
        report = engine.validate(doc.xml, doc.syntax, doc.profile)
        assert {layer.layer for layer in report.layers} >= {"xsd", "en16931", "br-fr"}
        assert report.outcome == "valid", report.summary_text()


def test_notes_and_addresses_in_ubl() -> None:
    data = make_flat(
        [
            {
                "notes": [("", 'Note libre; avec "guillemets"'), ("PMT", "Indemnité : 40 €"), ("BAR", "B2B")],
                "seller_endpoint": "123456782_FACT",
                "seller_endpoint_scheme": "",
                "buyer_endpoint": "98765432400019",
                "buyer_endpoint_scheme": "0009",
            }
        ]
    )
    assert b'"Note libre; avec ""guillemets"""' in data
    root = etree.fromstring(FlatConverter().convert(data)[0].ubl)
    assert [n.text for n in root.findall(f"{{{CBC}}}Note")] == [
        'Note libre; avec "guillemets"',
        "#PMT#Indemnité : 40 €",
        "#BAR#B2B",
    ]
    seller, buyer = root.findall(f".//{{{CBC}}}EndpointID")
    assert (seller.text, seller.get("schemeID")) == ("123456782_FACT", "0225")  # scheme defaults to 0225
    assert (buyer.text, buyer.get("schemeID")) == ("98765432400019", "0009")
    assert seller.getparent().getparent().tag.endswith("AccountingSupplierParty")


def _new_style_lines() -> list[str]:
    return _lines(make_flat(2))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # N after an L record of the same invoice
        (
            lambda ls: ls[:8] + ["N;PMT;late"] + ls[8:],
            r"^flat file line 9: N record \(invoice note\) not allowed after the L record of line 8; it belongs after its invoice's F record",
        ),
        # N before any F
        (
            lambda ls: ls[:1] + ["N;PMT;x"] + ls[1:],
            r"^flat file line 2: N record \(invoice note\) outside an invoice",
        ),
        # N between the T of one invoice and the F of the next
        (
            lambda ls: ls[:9] + ["N;PMT;x"] + ls[9:],
            r"^flat file line 10: N record \(invoice note\) outside an invoice",
        ),
    ],
)
def test_note_in_the_wrong_place(identifier: Identifier, mutate, message: str) -> None:
    lines = _new_style_lines()
    assert [line[0] for line in lines[:10]] == list("HFNNNNLLTF")
    with pytest.raises(IdentifyError, match=message):
        identifier.identify(_join(mutate(lines)), "f.txt")


@pytest.mark.parametrize(
    ("record", "mutate", "message"),
    [
        (
            "N",
            lambda r: r + ";suite",
            r"^line 4: invoice note record \(N\) has 4 fields, at most 3 expected \(a value containing ';' must be quoted",
        ),
        (
            "F",
            lambda r: r + ";FA-1;2025-01-15;x",
            r"^line 2: invoice record \(F\) has 21 fields, at most 20 expected",
        ),
        (
            "F",
            lambda r: r + ";FA-1;15/01/2025",
            r"^line 2, field 'preceding invoice issue date' \(F position 20\): '15/01/2025' is not a date YYYY-MM-DD$",
        ),
        (
            "F",
            lambda r: r + ";;2025-01-15",
            r"^line 2, field 'preceding invoice issue date' \(F position 20\): given without 'preceding invoice number' \(F position 19\)$",
        ),
        (
            "N",
            lambda r: "N;pmt;x",
            r"^line 4, field 'note subject code' \(N position 2\): 'pmt' is not a UNTDID 4451 subject code",
        ),
        ("N", lambda r: "N;PMT;", r"^line 4, field 'note text' \(N position 3\): missing required value"),
        (
            "F",
            lambda r: ";".join(r.split(";")[:14] + ["", "0225", "987654324", ""]),
            r"^line 2, field 'seller electronic address scheme' \(F position 16\): given without 'seller electronic address' \(F position 15\)",
        ),
        (
            "F",
            lambda r: ";".join(r.split(";")[:15] + ["02-25"] + r.split(";")[16:]),
            r"^line 2, field 'seller electronic address scheme' \(F position 16\): '02-25' is not an EAS code",
        ),
        (
            "F",
            lambda r: ";".join(r.split(";")[:16] + ["a b"] + r.split(";")[17:]),
            r"^line 2, field 'buyer electronic address' \(F position 17\): 'a b' is not an electronic address",
        ),
    ],
)
def test_extension_field_errors_reject_one_invoice(
    identifier: Identifier, record: str, mutate, message: str
) -> None:
    lines = _new_style_lines()
    index = next(
        i
        for i, line in enumerate(lines)
        if line.startswith(record + ";") and (record != "N" or "PMT" in line)
    )
    lines[index] = mutate(lines[index])
    bad, good = identifier.identify(_join(lines), "f.txt").invoices
    assert bad.error is not None and bad.error.rule_id == "GW-FLAT-FIELD"
    assert re.search(message, bad.error.message), bad.error.message
    assert good.error is None and good.summary.number == "FL-0002"


# -- layout extension: preceding invoice (F positions 19-20, BT-25/BT-26), BR-FR-CO-05 for credit notes -------
def _billing_reference(ubl: bytes) -> tuple[str | None, str | None] | None:
    ref = etree.fromstring(ubl).find(f"{{{CAC}}}BillingReference/{{{CAC}}}InvoiceDocumentReference")
    if ref is None:
        return None
    return ref.findtext(f"{{{CBC}}}ID"), ref.findtext(f"{{{CBC}}}IssueDate")


@pytest.mark.parametrize(
    ("spec", "syntax", "expected"),
    [
        ({"number": "AV-1", "type_code": "381"}, Syntax.UBL_CREDITNOTE, ("INV-0000", "2025-01-15")),
        (
            {
                "number": "AV-2",
                "type_code": "381",
                "preceding_invoice": "FA-2024-17",
                "preceding_invoice_date": "2024-12-02",
            },
            Syntax.UBL_CREDITNOTE,
            ("FA-2024-17", "2024-12-02"),
        ),
        # an invoice may refer to a preceding one too (e.g. a correction)
        ({"number": "FA-3", "preceding_invoice": "FA-2"}, Syntax.UBL_INVOICE, ("FA-2", "2025-01-15")),
    ],
)
def test_preceding_invoice_passes_xsd_en16931_and_br_fr(
    identifier: Identifier, engine: ValidationEngine, spec: dict, syntax: Syntax, expected: tuple[str, str]
) -> None:
    data = make_flat([spec], encoding="ISO-8859-1")
    f_record = next(r for r in _lines(data, "latin-1") if r.startswith("F;")).split(";")
    assert (len(f_record), tuple(f_record[18:20])) == (20, expected)
    doc = identifier.identify(data, "f.txt").invoices[0]
    assert doc.error is None and doc.syntax == syntax
    assert _billing_reference(doc.xml) == expected
    # UBL 2.1 sequence: ... OrderReference, BillingReference, ..., AccountingSupplierParty
    names = [etree.QName(el).localname for el in etree.fromstring(doc.xml)]
    position = names.index("BillingReference")
    assert names[position - 1] == "OrderReference" and names[position + 1] == "AccountingSupplierParty"
    report = engine.validate(doc.xml, doc.syntax, doc.profile)
    assert {layer.layer for layer in report.layers} >= {"xsd", "en16931", "br-fr"}
    assert report.outcome == "valid", report.summary_text()


@pytest.mark.parametrize(
    "strip",
    [
        lambda r: ";".join(r.split(";")[:18]),  # fields left out
        lambda r: ";".join(r.split(";")[:18] + ["", ""]),  # fields empty
    ],
)
def test_credit_note_without_preceding_invoice_fails_br_fr_co_05(
    identifier: Identifier, engine: ValidationEngine, strip
) -> None:
    lines = _lines(make_flat([{"number": "AV-9", "type_code": "381"}]))
    index = next(i for i, line in enumerate(lines) if line.startswith("F;"))
    assert lines[index].endswith(";INV-0000;2025-01-15")
    lines[index] = strip(lines[index])
    doc = identifier.identify(_join(lines), "f.txt").invoices[0]
    assert doc.error is None and doc.syntax == Syntax.UBL_CREDITNOTE
    assert _billing_reference(doc.xml) is None
    report = engine.validate(doc.xml, doc.syntax, doc.profile)
    assert report.outcome == "invalid"
    assert {f.rule_id.split("_")[0] for f in report.fatal_findings} == {"BR-FR-CO-05"}


def test_preceding_invoice_without_date() -> None:
    """BT-26 is optional in EN 16931: the number alone gives a reference without IssueDate."""
    lines = _lines(make_flat([{"number": "AV-5", "type_code": "381"}]))
    index = next(i for i, line in enumerate(lines) if line.startswith("F;"))
    lines[index] = lines[index].removesuffix("2025-01-15")
    assert _billing_reference(FlatConverter().convert(_join(lines))[0].ubl) == ("INV-0000", None)


def test_credit_note_reference_only_with_french_mentions() -> None:
    data = make_flat([{"type_code": "381"}], french_mentions=False)
    f_record = next(r for r in _lines(data) if r.startswith("F;"))
    assert len(f_record.split(";")) == 14
    assert _billing_reference(FlatConverter().convert(data)[0].ubl) is None
