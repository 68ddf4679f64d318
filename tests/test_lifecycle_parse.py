"""Incoming lifecycle flows: identification (CDAR, status CSV) and parsing into status lines (issue 18)."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.errors import IdentifyError
from gateway.model import LIFECYCLE_SYNTAXES, Syntax
from gateway.transforms.identify import Identifier
from gateway.transforms.lifecycle_in import looks_like_status_csv, parse_cdar, parse_status_csv
from gateway.transforms.xmlsafe import parse_xml

from lifecycle_support import CDAR_CORPUS, SHARED

HEADER = "invoice_number;seller_siret;status_code;date;reason_code;reason_text"


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier()


def test_status_csv_is_identified(identifier: Identifier) -> None:
    data = f"{HEADER}\nF-1;12345678200010;204;2026-09-02;;\n".encode()
    result = identifier.identify(data, "statuses.csv")
    assert (result.syntax, result.syntax_code) == (Syntax.STATUS_CSV, "GW_STATUS_CSV")
    assert result.syntax.value in LIFECYCLE_SYNTAXES
    (doc,) = result.invoices
    assert doc.xml == data and doc.item == "statuses.csv"


def test_status_csv_lines() -> None:
    data = (
        "\ufeff" + HEADER + ";amount;vat_rate\r\n"
        'F-1;12345678200010;210;2026-09-02;TX_TVA_ERR;"Taux; erroné";;\r\n'
        "F-2;123456782;212;2026-09-03T10:15:00+02:00;;;1200.50;20\r\n"
        "\r\n"
        "F-3;1234;2100;yesterday;;;abc;\r\n"
        "F-4;12345678200010;205\r\n"
    ).encode()
    assert looks_like_status_csv(data)
    one, two, three, four = parse_status_csv(data)
    assert (one.invoice_number, one.seller_id, one.code, one.reason_code, one.reason_text) == (
        "F-1", "12345678200010", "210", "TX_TVA_ERR", "Taux; erroné",
    )  # fmt: skip
    assert one.at == datetime(2026, 9, 2, tzinfo=UTC) and one.error is None and one.item == "line 2"
    assert two.at == datetime(2026, 9, 3, 8, 15, tzinfo=UTC)
    assert (two.amount, two.vat_rate, two.seller_id) == (Decimal("1200.50"), Decimal("20"), "123456782")
    assert three.error and "SIRET" in three.error and "3-digit" in three.error and "date" in three.error
    assert "amount" in three.error
    assert four.error and "fields" in four.error and four.item == "line 6"
    assert [line.seq for line in (one, two, three, four)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (HEADER.encode() + b"\n", "no status line"),
        (HEADER.encode() + b";extra\nF;1;2;3;4;5;6\n", "header must be"),
        (HEADER.encode() + b"\n\xff\xfe;x\n", "not UTF-8"),
    ],
)
def test_unreadable_status_csv_is_refused(identifier: Identifier, data: bytes, message: str) -> None:
    with pytest.raises(IdentifyError, match=message):
        identifier.identify(data, "s.csv")


def test_a_csv_without_the_header_is_not_a_status_flow(identifier: Identifier) -> None:
    with pytest.raises(IdentifyError, match="unknown format"):
        identifier.identify(b"F-1;12345678200010;204;2026-09-02;;\n", "s.csv")


def test_empty_cdar_root_is_identified_and_yields_no_line(identifier: Identifier) -> None:
    data = (
        b"<x:CrossDomainAcknowledgementAndResponse xmlns:x='urn:un:unece:uncefact:data:standard:"
        b"CrossDomainAcknowledgementAndResponse:100'/>"
    )
    result = identifier.identify(data, "empty.xml")
    assert (result.syntax, result.syntax_code, result.profile) == (Syntax.CDAR, "GW_CDAR_D22B", None)
    with pytest.raises(IdentifyError, match="references no invoice"):
        parse_cdar(parse_xml(data))


def test_cdar_inside_a_zip_is_refused_as_an_entry(identifier: Identifier) -> None:
    data = (
        b"<x:CrossDomainAcknowledgementAndResponse xmlns:x='urn:un:unece:uncefact:data:standard:"
        b"CrossDomainAcknowledgementAndResponse:100'/>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("status.xml", data)
    (doc,) = identifier.identify(buffer.getvalue(), "b.zip").invoices
    assert doc.error is not None and "accepted alone" in doc.error.message


def _corpus_cdars() -> list[Path]:
    return sorted(CDAR_CORPUS.glob("*.xml")) if CDAR_CORPUS.is_dir() else []


@pytest.mark.corpus
@pytest.mark.skipif(not _corpus_cdars(), reason=f"CDAR corpus not found under {SHARED}")
def test_the_twelve_corpus_cdar_are_lifecycle_messages(identifier: Identifier) -> None:
    files = _corpus_cdars()
    assert len(files) == 12
    seen = set()
    for path in files:
        data = path.read_bytes()
        result = identifier.identify(data, path.name)
        assert result.syntax is Syntax.CDAR, path.name
        assert result.profile in ("urn.cpro.gouv.fr:1p0:CDV:invoice", "urn.cpro.gouv.fr:1p0:CDV:einvoicingF2")
        (line,) = parse_cdar(parse_xml(data))
        assert line.error is None, (path.name, line.error)
        assert line.invoice_number and line.seller_id and line.at is not None
        if path.name.startswith("UC1_"):
            assert (line.invoice_number, line.seller_id, line.invoice_date) == (
                "F202500003",
                "100000009",
                "2025-07-01",
            )
            assert line.code in path.name
        seen.add(line.code)
        if line.code == "212":
            assert (line.amount, line.vat_rate, line.currency) == (Decimal("12000"), Decimal("20.00"), "EUR")
        if line.code == "207":
            assert line.reason_code == "TX_TVA_ERR" and line.reason_text == "Taux de TVA erroné"
    assert seen == {"200", "202", "203", "204", "205", "207", "211", "212", "213"}
