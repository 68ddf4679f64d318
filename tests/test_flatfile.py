"""cpp-flat-v1 flat files (domain.md §6): parsing, encodings, quoting, errors naming line and field, UBL output."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from gateway.errors import IdentifyError
from gateway.model import Syntax
from gateway.transforms.flatfile import FlatConverter, Layout
from gateway.transforms.identify import Identifier
from invoice_factory import ArtefactValidator, make_flat, shared_validator


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
    assert set(layout.records) == {"H", "F", "L", "T", "Z"}
    f_fields = [f["name"] for f in sorted(layout.records["F"]["fields"], key=lambda f: f["position"])]
    assert f_fields[:3] == ["number", "type_code", "issue_date"] and f_fields[-1] == "due_date"


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
    lines = _lines(make_flat(1))
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
    lines = _lines(make_flat(2))
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
    lines = _lines(make_flat(1))
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
