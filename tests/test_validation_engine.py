"""Validation engine on real corpus files (issues 4 and 11).

Engines are module-scoped: each rule pack is compiled once for the whole module.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from lxml import etree

from gateway.model import Severity, Syntax
from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import ValidationConfig, plan_for
from gateway.validation.report import ValidationReport
from gateway.validation.rulepacks import RulePackRegistry

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus"
CEN_RELEASE = SHARED / "artefacts" / "en16931-cen-1.3.16"
MUSTANG_LIB = "mustangproject/library/src/test/resources"
MUSTANG_VAL = "mustangproject/validator/src/test/resources"
KINDS = {"ubl-invoice": Syntax.UBL_INVOICE, "ubl-creditnote": Syntax.UBL_CREDITNOTE, "cii": Syntax.CII}
FX_EXTENDED = "urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended"
XRECHNUNG_3 = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}

# Catalog rows whose upstream expectation we do not share, with the reason (checked by a test below).
CATALOG_EXCEPTIONS = {
    # Upstream asserts a failure of the German XRechnung CIUS rules (KoSIT); as EN 16931 it is valid,
    # and XRechnung rules are not part of the gateway's plan.
    f"{MUSTANG_VAL}/invalidXRv2.xml": "valid",
    # A PDF carrying an XRechnung guideline ID: the gateway judges CII in a PDF as Factur-X, whose
    # EN16931 pack rejects non-Factur-X guideline IDs (FX-SCH-A-000556). Mustang accepts ZUGFeRD's
    # XRECHNUNG hybrid profile.
    f"{MUSTANG_VAL}/validXRechnung.pdf": "invalid",
    # Guideline `urn:cen.eu:en16931:2017:compliant:factur-x.eu:1p0:en16931` (pre-1.0 Factur-X form, ':'
    # instead of '#') is not a Factur-X ID any more: FX-SCH-A-000556.
    f"{MUSTANG_VAL}/validV2PDF.pdf": "invalid",
}


def corpus_file(relative: str) -> bytes:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"corpus file not found: {path}")
    return path.read_bytes()


def guideline(xml: bytes) -> str | None:
    root = etree.fromstring(xml)
    found = root.xpath(
        "/rsm:CrossIndustryInvoice/rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/"
        "ram:ID/text() | /*/cbc:CustomizationID/text()",
        namespaces=NS,
    )
    return str(found[0]).strip() if found else None


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> RulePackRegistry:
    """Builtin packs plus the CEN 1.3.16 release installed (when the artefacts are present)."""
    registry = RulePackRegistry(tmp_path_factory.mktemp("rules"))
    if CEN_RELEASE.is_dir():
        registry.install(CEN_RELEASE)
    return registry


@pytest.fixture(scope="module")
def builtin_registry() -> RulePackRegistry:
    return RulePackRegistry(None)


@pytest.fixture(scope="module")
def engine(registry: RulePackRegistry) -> ValidationEngine:
    """Default plan (BR-FR on), CEN pack chosen for standalone CII."""
    return ValidationEngine(ValidationConfig(), registry)


@pytest.fixture(scope="module")
def en16931_engine(registry: RulePackRegistry) -> ValidationEngine:
    """EN 16931 level only (BR-FR off): what the corpus' upstream expectations are about."""
    return ValidationEngine(ValidationConfig(br_fr=False), registry)


@pytest.fixture(scope="module")
def facturx_engine(builtin_registry: RulePackRegistry) -> ValidationEngine:
    """Standalone CII judged by the Factur-X EN16931 pack (no CEN pack)."""
    return ValidationEngine(
        ValidationConfig(br_fr=False, en16931_cii_pack="facturx-en16931"), builtin_registry
    )


@pytest.fixture
def cen_available(registry: RulePackRegistry) -> None:
    if registry.find("cen-en16931") is None:
        pytest.skip(f"CEN release not found at {CEN_RELEASE}")


# -- plan ---------------------------------------------------------------------------------------------
def _plan(
    registry: RulePackRegistry, syntax: Syntax, profile: str | None, container: str | None = None, **cfg
):
    plan = plan_for(ValidationConfig(**cfg), registry, syntax, profile, container, "")
    return [(layer.name, layer.pack_id, layer.role) for layer in plan.layers]


def test_default_plan_table(registry: RulePackRegistry, cen_available: None) -> None:
    assert _plan(registry, Syntax.UBL_INVOICE, "urn:cen.eu:en16931:2017") == [
        ("xsd", "ubl-2.1-xsd", "xsd-invoice"),
        ("en16931", "ubl-en16931", "schematron-ubl"),
        ("br-fr", "br-fr-ubl", "schematron-ubl"),
    ]
    assert _plan(registry, Syntax.UBL_CREDITNOTE, None)[0] == ("xsd", "ubl-2.1-xsd", "xsd-creditnote")
    ctc = "urn:cen.eu:en16931:2017#conformant#urn.cpro.gouv.fr:1p0:extended-ctc-fr"
    assert _plan(registry, Syntax.UBL_INVOICE, ctc)[1] == (
        "extended-ctc-fr",
        "extended-ctc-fr-ubl",
        "schematron-ubl",
    )
    assert _plan(registry, Syntax.CII, "urn:factur-x.eu:1p0:minimum", "pdf") == [
        ("xsd", "facturx-minimum", "xsd-cii"),
        ("facturx-minimum", "facturx-minimum", "schematron-cii"),
    ]
    assert [n for n, _, _ in _plan(registry, Syntax.CII, "urn:factur-x.eu:1p0:basicwl")] == [
        "xsd",
        "facturx-basicwl",
    ]
    basic = "urn:cen.eu:en16931:2017#compliant#urn:factur-x.eu:1p0:basic"
    assert _plan(registry, Syntax.CII, basic, "pdf")[-1] == ("br-fr", "br-fr-cii", "schematron-cii")
    assert _plan(registry, Syntax.CII, "urn:cen.eu:en16931:2017", "pdf")[1] == (
        "en16931",
        "facturx-en16931",
        "schematron-cii",
    )
    assert _plan(registry, Syntax.CII, FX_EXTENDED, None)[:2] == [
        ("xsd", "facturx-extended", "xsd-cii"),
        ("facturx-extended", "facturx-extended", "schematron-cii"),
    ]
    assert _plan(registry, Syntax.CII, ctc)[:2] == [
        ("xsd", "extended-ctc-fr-cii", "xsd-cii"),
        ("extended-ctc-fr", "extended-ctc-fr-cii", "schematron-cii"),
    ]
    # standalone CII: core ID, XRechnung, ZUGFeRD 1, unknown or no ID -> CEN (installed), Factur-X XSD
    for profile in (
        "urn:cen.eu:en16931:2017",
        XRECHNUNG_3,
        "urn:ferd:CrossIndustryDocument:invoice:1p0:comfort",
        "x",
        None,
    ):
        assert _plan(registry, Syntax.CII, profile, None) == [
            ("xsd", "facturx-en16931", "xsd-cii"),
            ("en16931", "cen-en16931", "schematron-cii"),
            ("br-fr", "br-fr-cii", "schematron-cii"),
        ]
    # ... but in a PDF a non-Factur-X ID is judged by Factur-X EN 16931
    assert _plan(registry, Syntax.CII, XRECHNUNG_3, "pdf")[1][1] == "facturx-en16931"
    # explicit choice, BR-FR switch, per-partner override, no plan for other syntaxes
    assert (
        _plan(registry, Syntax.CII, XRECHNUNG_3, en16931_cii_pack="facturx-en16931")[1][1]
        == "facturx-en16931"
    )
    assert [n for n, _, _ in _plan(registry, Syntax.UBL_INVOICE, None, br_fr=False)] == ["xsd", "en16931"]
    cfg = ValidationConfig(partners={"acme": {"br_fr": False}})
    assert [
        layer.name for layer in plan_for(cfg, registry, Syntax.UBL_INVOICE, None, None, "acme").layers
    ] == [
        "xsd",
        "en16931",
    ]
    assert plan_for(cfg, registry, Syntax.ZIP, None, None, "").layers == ()


def test_auto_falls_back_to_facturx_when_cen_is_absent(builtin_registry: RulePackRegistry) -> None:
    assert _plan(builtin_registry, Syntax.CII, XRECHNUNG_3)[1] == (
        "en16931",
        "facturx-en16931",
        "schematron-cii",
    )
    missing = plan_for(
        ValidationConfig(en16931_cii_pack="cen-en16931"), builtin_registry, Syntax.CII, XRECHNUNG_3, None, ""
    )
    assert missing.layers[1].pack is None  # kept in the plan, reported as not run


# -- facts domain.md asks to pin --------------------------------------------------------------------
def test_facturx_pack_rejects_non_facturx_guideline_and_cen_does_not(
    facturx_engine: ValidationEngine, en16931_engine: ValidationEngine, cen_available: None
) -> None:
    xml = corpus_file(f"{MUSTANG_VAL}/validXRV30.xml")
    assert guideline(xml) == XRECHNUNG_3
    by_facturx = facturx_engine.validate(xml, Syntax.CII, XRECHNUNG_3)
    judge = next(layer for layer in by_facturx.layers if layer.layer == "en16931")
    assert judge.pack_id == "facturx-en16931" and judge.artefact == "FACTUR-X_EN16931.xslt"
    assert "FX-SCH-A-000556" in {f.rule_id for f in by_facturx.fatal_findings}
    assert by_facturx.outcome == "invalid"
    by_cen = en16931_engine.validate(xml, Syntax.CII, XRECHNUNG_3)
    judge = next(layer for layer in by_cen.layers if layer.layer == "en16931")
    assert (judge.pack_id, judge.pack_version, judge.artefact) == (
        "cen-en16931",
        "1.3.16",
        "EN16931-CII-validation.xslt",
    )
    assert "FX-SCH-A-000556" not in {f.rule_id for f in by_cen.findings}
    assert by_cen.outcome == "valid"


@pytest.mark.parametrize("name", ["Extended_fremdwaehrung.xml", "line-total-4-decimals.xml"])
def test_normalize_space_dynamic_error_is_never_a_pass(name: str, registry: RulePackRegistry) -> None:
    xml = corpus_file(f"{MUSTANG_LIB}/{name}")
    rules_only = ValidationEngine(ValidationConfig(xsd=False, br_fr=False), registry)
    report = rules_only.validate(xml, Syntax.CII, FX_EXTENDED, "pdf")
    assert report.outcome == "not_validated"
    layer = report.layers[0]
    assert (layer.layer, layer.pack_id, layer.status) == ("facturx-extended", "facturx-extended", "error")
    assert "normalize-space" in layer.message and "FACTUR-X_EXTENDED.xslt" in layer.message
    assert any("normalize-space" in cause for cause in report.causes)
    assert str(report.reason) == "REJ_SEMAN"
    # With the XSD layer (default) the same documents are XSD-invalid (two URIIDs): invalid, and the
    # rules layer still says it could not run and why.
    full = ValidationEngine(ValidationConfig(br_fr=False), registry).validate(
        xml, Syntax.CII, FX_EXTENDED, "pdf"
    )
    assert full.outcome == "invalid"
    assert [layer.status for layer in full.layers] == ["failed", "error"]
    assert full.layers[0].findings[0].rule_id == "XSD" and full.layers[0].findings[0].location.startswith(
        "line "
    )


def test_idless_report_gets_a_stable_id_across_documents(facturx_engine: ValidationEngine) -> None:
    """Factur-X 'not used in the given context' reports have no @id: same rule -> same id, any invoice."""
    first = facturx_engine.validate(
        corpus_file("en16931/cii/examples/CII_example5.xml"), Syntax.CII, None, "pdf"
    )
    second = facturx_engine.validate(
        corpus_file("en16931/cii/examples/huf_example_cii.xml"), Syntax.CII, None, "pdf"
    )
    pattern = re.compile(r"^facturx-en16931:[0-9a-f]{12}$")
    ids_first = {f.rule_id: f for f in first.findings if pattern.match(f.rule_id)}
    ids_second = {f.rule_id: f for f in second.findings if pattern.match(f.rule_id)}
    common = set(ids_first) & set(ids_second)
    assert common, (sorted(ids_first), sorted(ids_second))
    for rule_id in common:
        assert ids_first[rule_id].severity == Severity.FATAL  # no flag on a Factur-X report = error
        assert "not used in the given context" in ids_first[rule_id].message
        assert ids_first[rule_id].pack == "facturx-en16931"
    assert first.outcome == second.outcome == "invalid"


def test_rule_ids_are_identical_between_two_runs(facturx_engine: ValidationEngine) -> None:
    xml = corpus_file(f"{MUSTANG_VAL}/invalidV2Profile.xml")
    runs = [facturx_engine.validate(xml, Syntax.CII, guideline(xml)) for _ in range(2)]
    assert [f.to_dict() for f in runs[0].findings] == [f.to_dict() for f in runs[1].findings]
    assert len(runs[0].findings) > 3


# -- outcomes -------------------------------------------------------------------------------------------
def test_valid_ubl_and_cii_pass_with_artefacts_named(en16931_engine: ValidationEngine) -> None:
    ubl = en16931_engine.validate(
        corpus_file("en16931/ubl/examples/ubl-tc434-example1.xml"), Syntax.UBL_INVOICE, None
    )
    assert ubl.outcome == "valid", ubl.summary_text()
    assert [(lr.layer, lr.pack_id, lr.artefact) for lr in ubl.layers] == [
        ("xsd", "ubl-2.1-xsd", "UBL-Invoice-2.1.xsd"),
        ("en16931", "ubl-en16931", "EN16931-UBL-validation.xslt"),
    ]
    assert all(re.fullmatch(r"[0-9a-f]{64}", lr.sha256) and lr.pack_version for lr in ubl.layers)
    cii = en16931_engine.validate(
        corpus_file("factur-x/tests/fixtures/xml/factur-x-en16931.xml"),
        Syntax.CII,
        "urn:cen.eu:en16931:2017",
        "pdf",
    )
    assert cii.outcome == "valid", cii.summary_text()
    assert all(lr.status == "passed" for lr in cii.layers)


def test_french_invoice_passes_the_full_default_plan(engine: ValidationEngine) -> None:
    xml = corpus_file("factur-x/tests/fixtures/xml/ubl-21-extended-ctc-fr.xml")
    report = engine.validate(xml, Syntax.UBL_INVOICE, guideline(xml))
    assert [lr.layer for lr in report.layers] == ["xsd", "extended-ctc-fr", "br-fr"]
    assert report.outcome == "valid", report.summary_text()


def test_br_fr_rejects_a_german_invoice_that_passes_en16931(
    engine: ValidationEngine, en16931_engine: ValidationEngine
) -> None:
    xml = corpus_file("en16931/ubl/examples/ubl-tc434-example1.xml")
    assert en16931_engine.validate(xml, Syntax.UBL_INVOICE, None).outcome == "valid"
    report = engine.validate(xml, Syntax.UBL_INVOICE, None)
    assert report.outcome == "invalid"
    assert {f.pack for f in report.fatal_findings} == {"br-fr-ubl"}
    assert all(f.rule_id.startswith("BR-FR-") for f in report.fatal_findings)


@pytest.mark.parametrize(
    ("relative", "syntax", "xpath"),
    [
        ("en16931/ubl/examples/ubl-tc434-example1.xml", Syntax.UBL_INVOICE, "//cbc:PayableAmount"),
        ("en16931/cii/examples/CII_example1.xml", Syntax.CII, "//ram:DuePayableAmount"),
    ],
)
@pytest.mark.parametrize("xsd", [True, False])
def test_non_numeric_amount_is_never_valid(
    relative: str, syntax: Syntax, xpath: str, xsd: bool, registry: RulePackRegistry
) -> None:
    root = etree.fromstring(corpus_file(relative))
    root.xpath(xpath, namespaces=NS)[0].text = "abc"
    engine = ValidationEngine(ValidationConfig(xsd=xsd, br_fr=False), registry)
    report = engine.validate(etree.tostring(root), syntax, guideline(etree.tostring(root)))
    assert report.outcome in ("invalid", "not_validated"), report.summary_text()
    if xsd:
        assert report.layers[0].status == "failed" and "abc" in report.layers[0].findings[0].message


def test_missing_pack_means_not_validated(builtin_registry: RulePackRegistry) -> None:
    engine = ValidationEngine(ValidationConfig(br_fr=False, en16931_cii_pack="cen-en16931"), builtin_registry)
    report = engine.validate(corpus_file("en16931/cii/examples/CII_example1.xml"), Syntax.CII, None)
    assert report.outcome == "not_validated"
    assert [(lr.layer, lr.status) for lr in report.layers] == [("xsd", "passed"), ("en16931", "not_run")]
    assert "cen-en16931" in report.layers[1].message


def test_pack_that_fails_to_compile_means_not_validated(tmp_path: Path) -> None:
    pack = tmp_path / "src"
    pack.mkdir()
    (pack / "broken.xslt").write_text(
        '<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="2.0">'
        '<xsl:template match="/"><xsl:value-of select="$undeclared"/></xsl:template></xsl:stylesheet>'
    )
    (pack / "rulepack.json").write_text(
        '{"id": "broken", "version": "1", "layers": {"schematron-cii": "broken.xslt"}}'
    )
    registry = RulePackRegistry(tmp_path / "rules")
    registry.install(pack)
    engine = ValidationEngine(ValidationConfig(br_fr=False, en16931_cii_pack="broken"), registry)
    xml = corpus_file("en16931/cii/examples/CII_example1.xml")
    for _ in range(2):  # the failure is remembered, not retried per document
        report = engine.validate(xml, Syntax.CII, None)
        assert report.outcome == "not_validated"
        assert (
            report.layers[1].status == "error" and "could not compile broken.xslt" in report.layers[1].message
        )
        assert "undeclared" in report.layers[1].message


def test_unreadable_xml_and_doctype_are_invalid(en16931_engine: ValidationEngine) -> None:
    broken = en16931_engine.validate(b"<Invoice><unclosed></Invoice>", Syntax.UBL_INVOICE, None)
    assert broken.outcome == "invalid" and broken.fatal_findings[0].rule_id == "XML"
    assert all(lr.status == "not_run" for lr in broken.layers[1:])
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
    report = en16931_engine.validate(doctype, Syntax.UBL_INVOICE, None)
    assert report.outcome == "invalid" and "DOCTYPE" in report.fatal_findings[0].message


def test_warning_pack_never_rejects(registry: RulePackRegistry) -> None:
    engine = ValidationEngine(ValidationConfig(br_fr=False, warning_packs=["br-fr-ubl"]), registry)
    report = engine.validate(
        corpus_file("en16931/ubl/examples/ubl-tc434-example1.xml"), Syntax.UBL_INVOICE, None
    )
    advisory = report.layers[-1]
    assert advisory.layer == "warnings:br-fr-ubl" and advisory.advisory
    assert advisory.findings and all(f.severity == Severity.WARNING for f in advisory.findings)
    assert report.outcome == "valid"


def test_report_serialisations(en16931_engine: ValidationEngine) -> None:
    xml = corpus_file(f"{MUSTANG_VAL}/invalidV2Root.xml")
    report = en16931_engine.validate(xml, Syntax.CII, guideline(xml), "pdf")
    data = report.to_dict()
    assert data["outcome"] == "invalid" and data["reason"] == "REJ_SEMAN"
    assert data["fatal_count"] == len(report.fatal_findings) > 0
    assert {layer["sha256"] for layer in data["layers"]} == {lr.sha256 for lr in report.layers}
    svrl = etree.fromstring(report.to_svrl())
    asserts = svrl.findall("{http://purl.oclc.org/dsdl/svrl}failed-assert")
    assert [a.get("id") for a in asserts] == [f.rule_id for f in report.findings]
    text = report.summary_text()
    assert "outcome: invalid" in text and "BR-CO-12" in text and report.layers[0].sha256[:12] in text


# -- corpus catalog ------------------------------------------------------------------------------------
def _catalog_rows(kinds: set[str]) -> list[dict[str, str]]:
    catalog = CORPUS / "catalog.csv"
    if not catalog.is_file():
        return []
    with catalog.open(encoding="utf-8", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["kind"] in kinds and r["expect"] in ("valid", "invalid")]


def _xml_from_pdf(data: bytes, embedded: str) -> bytes:
    from facturx import get_xml_from_pdf

    name, xml = get_xml_from_pdf(data, check_xsd=False)
    if name != embedded:  # e.g. validV2PDF.pdf also carries a ZUGFeRD 1 file, which factur-x picks
        from io import BytesIO

        from pypdf import PdfReader

        xml = PdfReader(BytesIO(data)).attachments[embedded][0]
    return xml


@pytest.mark.corpus
def test_catalog_expectations(en16931_engine: ValidationEngine, cen_available: None) -> None:
    rows = _catalog_rows({"ubl-invoice", "ubl-creditnote", "cii", "pdf+cii"})
    if not rows:
        pytest.skip(f"corpus catalog not found under {CORPUS}")
    mismatches: dict[str, str] = {}
    for row in rows:
        data = (CORPUS / row["path"]).read_bytes()
        if row["kind"] == "pdf+cii":
            report = en16931_engine.validate(
                _xml_from_pdf(data, row["embedded"]), Syntax.CII, row["profile"], "pdf"
            )
        else:
            report = en16931_engine.validate(data, KINDS[row["kind"]], row["profile"] or None)
        expected = CATALOG_EXCEPTIONS.get(row["path"], row["expect"])
        if report.outcome != expected:
            mismatches[row["path"]] = f"expected {expected}, got {report.outcome}: {report.summary_text(3)}"
    assert not mismatches, "\n".join(f"{k}: {v}" for k, v in mismatches.items())
    assert len(rows) > 100


def test_catalog_exceptions_still_differ_from_upstream(
    en16931_engine: ValidationEngine, cen_available: None
) -> None:
    """Each listed exception must still disagree with upstream for the stated reason."""
    xml = corpus_file(f"{MUSTANG_VAL}/invalidXRv2.xml")
    assert en16931_engine.validate(xml, Syntax.CII, guideline(xml)).outcome == "valid"
    for name in ("validXRechnung.pdf", "validV2PDF.pdf"):
        report = en16931_engine.validate(
            _xml_from_pdf(corpus_file(f"{MUSTANG_VAL}/{name}"), "factur-x.xml"), Syntax.CII, None, "pdf"
        )
        assert {f.rule_id for f in report.fatal_findings} == {"FX-SCH-A-000556"}


def test_report_is_picklable(en16931_engine: ValidationEngine) -> None:
    import pickle

    report = en16931_engine.validate(corpus_file(f"{MUSTANG_VAL}/invalidV2Root.xml"), Syntax.CII, None, "pdf")
    assert pickle.loads(pickle.dumps(report)) == report
    assert isinstance(ValidationReport.not_validated("x").layers[0].message, str)
