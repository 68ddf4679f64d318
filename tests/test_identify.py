"""Identification of generated flows: XML, PDF, ZIP, flat; hostile inputs; fuzzing; CLI; speed."""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfWriter

from gateway.errors import IdentifyError
from gateway.model import ReasonCode, Severity, Syntax
from gateway.transforms.identify import Identifier, IdentifyLimits

from invoice_factory import make_cii, make_flat, make_ubl


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier()


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _facturx_pdf(xml: bytes) -> bytes:
    from facturx import generate_from_binary

    return generate_from_binary(_blank_pdf(), xml, check_xsd=False)


# -- single documents --------------------------------------------------------------------------------------
def test_ubl_invoice(identifier: Identifier) -> None:
    result = identifier.identify(make_ubl(lines=3, number="U-1"), "u.xml")
    assert result.syntax is Syntax.UBL_INVOICE
    assert result.syntax_code == "IN_DP_E1_UBL_INVOICE"
    assert result.profile == "urn:cen.eu:en16931:2017"
    (doc,) = result.invoices
    assert doc.item == "u.xml" and doc.container is None and doc.error is None
    assert doc.summary.number == "U-1" and doc.summary.line_count == 3


def test_ubl_creditnote(identifier: Identifier) -> None:
    result = identifier.identify(make_ubl(number="C-1", type_code="381"), "c.xml")
    assert result.syntax is Syntax.UBL_CREDITNOTE
    assert result.syntax_code == "IN_DP_E1_UBL_INVOICE"
    assert result.invoices[0].summary.type_code == "381"


def test_cii(identifier: Identifier) -> None:
    result = identifier.identify(make_cii(lines=4, number="K-9"), "k.xml")
    assert (result.syntax, result.syntax_code) == (Syntax.CII, "IN_DP_E1_CII_16B")
    assert result.invoices[0].summary.number == "K-9"
    assert result.invoices[0].summary.issue_date == "2025-03-14"


def test_facturx_pdf(identifier: Identifier) -> None:
    result = identifier.identify(_facturx_pdf(make_cii(number="PDF-1")), "f.pdf")
    assert (result.syntax, result.syntax_code) == (Syntax.FACTURX_PDF, "IN_DP_E2_CII_FACTURX")
    (doc,) = result.invoices
    assert doc.syntax is Syntax.CII and doc.container == "pdf"
    assert doc.facturx_level == "EN 16931" and doc.error is None
    assert doc.summary.number == "PDF-1"
    assert doc.xml.lstrip().startswith(b"<?xml")


def test_pdf_without_invoice(identifier: Identifier) -> None:
    with pytest.raises(IdentifyError, match="PDF has no embedded factur-x.xml") as info:
        identifier.identify(_blank_pdf(), "blank.pdf")
    assert info.value.reason is ReasonCode.SYNTAX


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<a xmlns='urn:x'><b/></a>", r"root element \{urn:x\}a is not an invoice"),
        (b"<Invoice><ID>1</ID>", r"XML is not well-formed: .* \(line 1\)"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "DOCTYPE is not allowed"),
        (b"<a>" * 300 + b"</a>" * 300, "deeper than"),
        (b"UNA:+.? 'UNB+UNOC:3+X+Y'", "EDIFACT"),
        (b"\x00\x01binary", "unknown format"),
        (
            b"<CrossIndustryDocument xmlns='urn:ferd:CrossIndustryDocument:invoice:1p0'/>",
            r"ZUGFeRD 1\.0 is not accepted \(CrossIndustryDocument\)",
        ),
        (b"%PDF-1.7\n%truncated", "PDF"),
    ],
)
def test_refused(identifier: Identifier, data: bytes, message: str) -> None:
    with pytest.raises(IdentifyError, match=message):
        identifier.identify(data, "x")


def test_billion_laughs_refused(identifier: Identifier) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><l>&b;</l>'
    )
    with pytest.raises(IdentifyError, match="DOCTYPE"):
        identifier.identify(bomb, "bomb.xml")


def test_depth_limit_configurable() -> None:
    doc = b"<a>" * 20 + b"</a>" * 20
    with pytest.raises(IdentifyError, match="deeper than 10"):
        Identifier(IdentifyLimits(max_xml_depth=10)).identify(doc, "deep.xml")


def test_limits_forbid_unknown_keys() -> None:
    with pytest.raises(ValueError):
        IdentifyLimits(max_zip_entrys=3)  # type: ignore[call-arg]


# -- ZIP batches -------------------------------------------------------------------------------------------
def test_zip_mixed_batch(identifier: Identifier) -> None:
    data = _zip(
        {
            "a/ubl.xml": make_ubl(number="Z-1"),
            "cii.xml": make_cii(number="Z-2"),
            "fx.pdf": _facturx_pdf(make_cii(number="Z-3")),
            "flat.txt": make_flat(2),
            "broken.xml": b"<Invoice>",
            "dir/": b"",
        }
    )
    result = identifier.identify(data, "batch.zip")
    assert (result.syntax, result.syntax_code) == (Syntax.ZIP, "GW_ZIP_BATCH")
    by_item = {doc.item: doc for doc in result.invoices}
    assert set(by_item) == {
        "a/ubl.xml",
        "cii.xml",
        "fx.pdf",
        "flat.txt#invoice-1",
        "flat.txt#invoice-2",
        "broken.xml",
    }
    assert by_item["a/ubl.xml"].summary.number == "Z-1"
    assert by_item["fx.pdf"].facturx_level == "EN 16931" and by_item["fx.pdf"].summary.number == "Z-3"
    assert by_item["flat.txt#invoice-2"].summary.number == "FL-0002"
    # the container is the innermost one: it decides the validation plan (a Factur-X PDF stays Factur-X)
    containers = {item: doc.container for item, doc in by_item.items()}
    assert containers == {"a/ubl.xml": "zip", "cii.xml": "zip", "fx.pdf": "pdf", "flat.txt#invoice-1": "flat",
                          "flat.txt#invoice-2": "flat", "broken.xml": "zip"}  # fmt: skip
    broken = by_item["broken.xml"].error
    assert broken is not None and broken.rule_id == "GW-SYNTAX" and broken.severity is Severity.FATAL
    assert "not well-formed" in broken.message
    assert sum(doc.error is not None for doc in result.invoices) == 1


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"../x.xml": b"<a/>"}, r"ZIP entry \.\./x\.xml escapes the archive"),
        ({"/etc/x.xml": b"<a/>"}, "absolute name"),
        ({"a.zip": b"PK\x03\x04rest"}, "ZIP holds a nested archive a.zip"),
        ({"inner.bin": _zip({"x.xml": b"<a/>"})}, "ZIP holds a nested archive inner.bin"),
        ({"y.tar.gz": b"\x1f\x8b...."}, "nested archive"),
    ],
)
def test_zip_refused(identifier: Identifier, entries: dict[str, bytes], message: str) -> None:
    with pytest.raises(IdentifyError, match=message):
        identifier.identify(_zip(entries), "bad.zip")


def test_zip_too_many_entries() -> None:
    data = _zip({f"{i}.xml": b"<a/>" for i in range(6)})
    with pytest.raises(IdentifyError, match="ZIP has more than 5 entries"):
        Identifier(IdentifyLimits(max_zip_entries=5)).identify(data, "many.zip")


def test_zip_bomb_ratio(identifier: Identifier) -> None:
    data = _zip({"bomb.xml": b"<a>" + b" " * 5_000_000 + b"</a>"})
    with pytest.raises(IdentifyError, match="compression bomb"):
        identifier.identify(data, "bomb.zip")


def test_zip_uncompressed_budget() -> None:
    data = _zip({"a.xml": make_ubl(), "b.xml": make_ubl()}, zipfile.ZIP_STORED)
    with pytest.raises(IdentifyError, match="uncompressed bytes"):
        Identifier(IdentifyLimits(max_zip_uncompressed_bytes=len(make_ubl()) + 10)).identify(data, "big.zip")


def test_zip_lying_about_size(identifier: Identifier) -> None:
    """An entry whose central directory understates its size is cut at the declared size and refused."""
    content = b"<a>" + b"x" * 50_000 + b"</a>"
    data = bytearray(_zip({"liar.xml": content}, zipfile.ZIP_STORED))
    declared = len(content).to_bytes(4, "little")
    small = (100).to_bytes(4, "little")
    # patch the uncompressed size in the central directory only; CRC then fails or the read stops early
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = small
    assert declared != small
    result = identifier.identify(bytes(data), "liar.zip")
    assert result.invoices[0].error is not None


def test_empty_zip(identifier: Identifier) -> None:
    with pytest.raises(IdentifyError, match="ZIP holds no files"):
        identifier.identify(_zip({}), "empty.zip")


# -- flat files --------------------------------------------------------------------------------------------
def test_flat_batch(identifier: Identifier) -> None:
    result = identifier.identify(make_flat(3), "batch.txt")
    assert (result.syntax, result.syntax_code) == (Syntax.FLAT, "GW_FLAT_CPP_V1")
    assert [doc.item for doc in result.invoices] == ["invoice-1", "invoice-2", "invoice-3"]
    assert all(doc.container == "flat" and doc.syntax is Syntax.UBL_INVOICE for doc in result.invoices)


# -- robustness --------------------------------------------------------------------------------------------
def _truncations(data: bytes) -> list[bytes]:
    return [data[:n] for n in (1, 5, 10, 50, 200, len(data) // 3, len(data) // 2, len(data) - 5)]


def test_truncated_inputs_only_raise_identify_error(identifier: Identifier) -> None:
    samples = [make_ubl(), make_cii(), _facturx_pdf(make_cii()), _zip({"a.xml": make_ubl()}), make_flat(1)]
    for sample in samples:
        for cut in _truncations(sample):
            with contextlib.suppress(IdentifyError):
                identifier.identify(cut, "cut")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(
        [b"", b"%PDF-1.4\n", b"PK\x03\x04", b"<?xml version='1.0'?>", b"H;cpp-flat-v1;", b"<"]
    ),
    body=st.binary(max_size=600),
)
def test_fuzz_only_identify_error(identifier: Identifier, prefix: bytes, body: bytes) -> None:
    with contextlib.suppress(IdentifyError):
        identifier.identify(prefix + body, "fuzz")


def test_flipped_bytes_in_zip_and_pdf(identifier: Identifier) -> None:
    for sample in (_zip({"a.xml": make_ubl(), "b.xml": make_cii()}), _facturx_pdf(make_cii())):
        for pos in range(0, len(sample), max(1, len(sample) // 60)):
            mutated = bytearray(sample)
            mutated[pos] ^= 0xFF
            with contextlib.suppress(IdentifyError):
                identifier.identify(bytes(mutated), "flip")


def test_identification_is_fast(identifier: Identifier) -> None:
    samples = [make_ubl(lines=20), make_cii(lines=20)]
    for sample in samples:
        identifier.identify(sample, "warm")
        timings = []
        for _ in range(30):
            start = time.perf_counter()
            identifier.identify(sample, "t")
            timings.append(time.perf_counter() - start)
        assert statistics.median(timings) < 0.010


# -- CLI ---------------------------------------------------------------------------------------------------
def test_cli_identify(tmp_path, capsys) -> None:
    import argparse

    from gateway.commands import identify as command

    good = tmp_path / "good.xml"
    good.write_bytes(make_ubl(number="CLI-1"))
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<nope/>")
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["identify", str(good), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"][0]["syntax_code"] == "IN_DP_E1_UBL_INVOICE"
    assert out["files"][0]["invoices"][0]["summary"]["number"] == "CLI-1"
    args = parser.parse_args(["identify", str(good), str(bad), str(tmp_path / "missing.xml")])
    assert args.func(args) == 1
    text = capsys.readouterr().out
    assert "CLI-1" in text and "IRR_SYNTAX" in text and "not an invoice" in text and "missing.xml" in text
