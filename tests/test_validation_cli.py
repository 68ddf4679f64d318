"""`gateway validate FILE...`: exit code = number of rejected files; text, json and svrl output."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from lxml import etree

from gateway.commands import validate as validate_command

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
VALID_UBL = CORPUS / "en16931/ubl/examples/ubl-tc434-example1.xml"
INVALID_CII = (
    CORPUS / "mustangproject/validator/src/test/resources/valid_with_VAT_O.xml"
)  # asserted invalid upstream
VALID_PDF = CORPUS / "factur-x/tests/fixtures/pdf/invoice_EN16931.pdf"


@pytest.fixture(autouse=True)
def corpus_present() -> None:
    for path in (VALID_UBL, INVALID_CII, VALID_PDF):
        if not path.is_file():
            pytest.skip(f"corpus file not found: {path}")


def run_cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    validate_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", *argv])
    out = io.StringIO()
    return args.func(args, out=out), out.getvalue()


def test_exit_code_counts_rejected_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01 not an invoice")
    code, out = run_cli(str(VALID_UBL), str(INVALID_CII), str(garbage), "--no-br-fr")
    assert code == 2
    assert "outcome: valid" in out and "outcome: invalid" in out and "rejected (unreadable)" in out
    assert out.rstrip().endswith("3 file(s), 2 rejected")


def test_br_fr_is_on_by_default() -> None:
    code, out = run_cli(str(VALID_UBL))
    assert code == 1 and "BR-FR-" in out


def test_json_output_and_pdf_input() -> None:
    code, out = run_cli(str(VALID_PDF), str(INVALID_CII), "--format", "json", "--no-br-fr")
    data = json.loads(out)
    assert code == 1 and data["rejected_files"] == 1
    by_file = {Path(r["file"]).name: r for r in data["results"]}
    pdf = by_file[VALID_PDF.name]
    assert pdf["outcome"] == "valid" and pdf["syntax"] == "cii"
    assert [layer["pack_id"] for layer in pdf["layers"]] == ["facturx-en16931", "facturx-en16931"]
    bad = by_file[INVALID_CII.name]
    assert bad["outcome"] == "invalid" and bad["reason"] == "REJ_SEMAN"
    assert any(f["rule_id"] == "BR-CO-26" for layer in bad["layers"] for f in layer["findings"])


def test_svrl_output_is_svrl() -> None:
    code, out = run_cli(str(INVALID_CII), "--format", "svrl", "--no-br-fr")
    assert code == 1
    root = etree.fromstring(out.encode("utf-8"))
    assert root.tag == "{http://purl.oclc.org/dsdl/svrl}schematron-output"
    assert root.findall("{http://purl.oclc.org/dsdl/svrl}failed-assert")


def test_workers_option_uses_the_pool() -> None:
    code, out = run_cli(str(VALID_UBL), str(INVALID_CII), "--no-br-fr", "--workers", "1", "--format", "json")
    assert code == 1
    assert [r["outcome"] for r in json.loads(out)["results"]] == ["valid", "invalid"]
