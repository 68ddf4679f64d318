"""Every corpus file (../shared/corpus/catalog.csv, rule tests excepted) is identified as its `kind` says."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gateway.errors import IdentifyError
from gateway.model import Syntax
from gateway.transforms.identify import Identifier

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
pytestmark = pytest.mark.corpus

# Files where the gateway knowingly disagrees with the catalog's `kind` (looked at one by one):
# invalidV2Root.xml has the CII namespace but root element `myinvoice`: not an invoice (it is `invalid` upstream).
REFUSED_DESPITE_KIND = {
    "mustangproject/validator/src/test/resources/invalidV2Root.xml": "is not an invoice",
}
# Factur-X PDFs whose XMP level contradicts the embedded XML's profile: identified, invoice rejected (GW-FX-LEVEL).
LEVEL_MISMATCH = {
    "mustangproject/validator/src/test/resources/invalidXMP.pdf",
    "mustangproject/validator/src/test/resources/invalidXMP-ParseError.pdf",
}
SYNTAX_OF_KIND = {
    "ubl-invoice": Syntax.UBL_INVOICE,
    "ubl-creditnote": Syntax.UBL_CREDITNOTE,
    "cii": Syntax.CII,
}


def _rows() -> list[dict[str, str]]:
    catalog = CORPUS / "catalog.csv"
    if not catalog.exists():
        return []
    with open(catalog, newline="", encoding="utf-8") as fh:
        return [
            row
            for row in csv.DictReader(fh)
            if row["kind"] != "vefa-testset" and row["expect"] != "rule-tests"
        ]


ROWS = _rows()


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier()


@pytest.mark.skipif(not ROWS, reason=f"corpus not found at {CORPUS} (../shared/corpus beside the repo)")
@pytest.mark.parametrize("row", ROWS, ids=[row["path"] for row in ROWS])
def test_corpus_file(identifier: Identifier, row: dict[str, str]) -> None:
    path, kind, profile = row["path"], row["kind"], row["profile"] or None
    data = (CORPUS / path).read_bytes()
    if path in REFUSED_DESPITE_KIND:
        with pytest.raises(IdentifyError, match=REFUSED_DESPITE_KIND[path]):
            identifier.identify(data, Path(path).name)
        return
    if kind in SYNTAX_OF_KIND:
        result = identifier.identify(data, Path(path).name)
        assert result.syntax is SYNTAX_OF_KIND[kind]
        (doc,) = result.invoices
        assert doc.syntax is SYNTAX_OF_KIND[kind] and doc.error is None
        assert doc.profile == profile and result.profile == profile
        assert doc.summary.number
    elif kind == "pdf+cii":
        result = identifier.identify(data, Path(path).name)
        assert (result.syntax, result.syntax_code) == (Syntax.FACTURX_PDF, "IN_DP_E2_CII_FACTURX")
        (doc,) = result.invoices
        assert doc.syntax is Syntax.CII and doc.container == "pdf"
        assert doc.profile == profile
        assert doc.facturx_level
        if path in LEVEL_MISMATCH:
            assert doc.error is not None and doc.error.rule_id == "GW-FX-LEVEL"
        else:
            assert doc.error is None, doc.error
    elif kind == "cdar":  # lifecycle messages (issue 18): identified, judged later by br-fr-cdv
        result = identifier.identify(data, Path(path).name)
        assert (result.syntax, result.syntax_code) == (Syntax.CDAR, "GW_CDAR_D22B")
        (doc,) = result.invoices
        assert doc.syntax is Syntax.CDAR and doc.profile == profile and doc.error is None
    else:
        expected = {
            "pdf-no-xml": "PDF has no embedded factur-x.xml",
            "pdf-unreadable": "PDF cannot be read",
            "zugferd1": r"ZUGFeRD 1\.0 is not accepted",
            "pdf+zugferd1": r"ZUGFeRD 1\.0 is not accepted",
        }
        if kind in expected:
            message = expected[kind]
        elif kind.startswith("pdf+other-xml:"):
            message = "not an invoice"
        elif kind.startswith("other-xml:"):
            message = "is not an invoice"
        elif kind.startswith("other:"):
            message = "not accepted|unknown format"
        else:
            pytest.fail(f"catalog kind {kind} has no expectation in this test")
        with pytest.raises(IdentifyError, match=message):
            identifier.identify(data, Path(path).name)
