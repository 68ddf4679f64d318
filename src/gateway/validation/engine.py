"""The validation engine: runs a plan's layers on one document, in one process.

Each XSD (lxml `XMLSchema`) and each compiled Schematron (saxonche `Xslt30Processor` executable) is built
once, on first use, and kept for the life of the engine; a compile failure is kept too, so a broken pack
costs one attempt and every document it should judge reports `not_validated` with the cause.

Per document, the XML is parsed once by lxml (safe parser, XSD layers) and once by Saxon: the Saxon tree
(`XdmNode`) is built on the first Schematron layer and shared by the following ones (each layer used to
re-parse the same text), so that layer's `duration_ms` includes the Saxon tree build and the later ones do
not. Documents a stylesheet loads with a literal `document('...')` (the Factur-X code lists) are loaded
once, at compile time (Saxon's `preEvaluateDocFunction`), not on every run. Other ways of running the same stylesheets faster were measured and left out (bench/README.md,
"FACTUR-X_EN16931 on large CII": what was tried).

Not thread-safe (SaxonC wants one processor per process): the daemon uses `ValidationPool`, which runs one
engine per worker process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.errors import GatewayError
from gateway.model import Finding, Severity, Syntax
from gateway.validation.plan import PlannedLayer, ValidationConfig, ValidationPlan, plan_for
from gateway.validation.report import LayerResult, ValidationReport
from gateway.validation.rulepacks import SCHEMATRON_ROLES, XSD_ROLES, RulePackRegistry
from gateway.validation.svrl import parse_svrl

MAX_XSD_FINDINGS = 200
PRE_EVALUATE_DOC_FUNCTION = "http://saxon.sf.net/feature/preEvaluateDocFunction"


@dataclass(frozen=True)
class _Failed:
    """A compile failure, remembered so the pack is not recompiled for every document."""

    message: str


def _schema_parser() -> etree.XMLParser:
    # XSDs import sibling files: local loading stays on, network and entities off.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False)


class ValidationEngine:
    def __init__(self, config: ValidationConfig, registry: RulePackRegistry) -> None:
        self.config = config
        self.registry = registry
        self._saxon: Any = None  # PySaxonProcessor, created on first use
        self._xslt30: Any = None
        self._compiled: dict[
            tuple[str, str, str], Any
        ] = {}  # (pack id, version, role) -> executable | _Failed

    # -- compilation ----------------------------------------------------------------------------
    def _processor(self) -> Any:
        if self._saxon is None:
            from saxonche import PySaxonProcessor  # heavy native import: only where it is used

            self._saxon = PySaxonProcessor(license=False)
            # `document('<literal>')` calls (the Factur-X packs look codes up in their `*_codedb.xml` with
            # 18 to 420 of them) are evaluated once, when the stylesheet is compiled, and the tree is kept
            # in the processor's configuration: before, every rule run re-parsed the code list (≈ 9 ms
            # CPU, more than half of a 5-line Factur-X run). Same file, same tree: same findings.
            self._saxon.set_configuration_property(PRE_EVALUATE_DOC_FUNCTION, "true")
            self._xslt30 = self._saxon.new_xslt30_processor()
        return self._saxon

    def _artefact(self, layer: PlannedLayer) -> Any:
        assert layer.pack is not None
        key = (layer.pack.id, layer.pack.version, layer.role)
        if key not in self._compiled:
            path = layer.pack.path_of(layer.role)
            try:
                if layer.is_xsd:
                    self._compiled[key] = etree.XMLSchema(etree.parse(str(path), _schema_parser()))
                else:
                    self._processor()
                    self._compiled[key] = self._xslt30.compile_stylesheet(stylesheet_file=str(path))
            except Exception as exc:  # lxml XMLSchemaParseError, saxonche PySaxonApiError, OSError
                self._compiled[key] = _Failed(f"could not compile {path.name}: {_one_line(exc)}")
        return self._compiled[key]

    def prepare(self, plan: ValidationPlan) -> None:
        """Compile every artefact the plan needs (so compile time is not billed to a document)."""
        for layer in plan.layers:
            if layer.pack is not None:
                self._artefact(layer)

    def warm_up(self) -> None:
        """Compile every layer of every available pack."""
        for pack in self.registry.list():
            for role in pack.layers:
                if role in XSD_ROLES or role in SCHEMATRON_ROLES:
                    self._artefact(PlannedLayer(name="warm-up", pack_id=pack.id, role=role, pack=pack))

    # -- running --------------------------------------------------------------------------------
    def plan(
        self, syntax: Syntax, profile: str | None, container: str | None = None, partner: str = ""
    ) -> ValidationPlan:
        return plan_for(self.config, self.registry, syntax, profile, container, partner)

    def validate(
        self, xml: bytes, syntax: Syntax, profile: str | None, container: str | None = None, partner: str = ""
    ) -> ValidationReport:
        plan = self.plan(syntax, profile, container, partner)
        self.prepare(plan)
        return self.run(plan, xml)

    def run(self, plan: ValidationPlan, xml: bytes) -> ValidationReport:
        if not plan.layers:
            return ValidationReport.not_validated(
                f"no validation plan for syntax {plan.syntax}", notes=plan.notes
            )
        from gateway.transforms.xmlsafe import parse_xml

        started = time.perf_counter()
        try:
            root = parse_xml(xml)
        except GatewayError as exc:
            unreadable = LayerResult(
                layer="xml",
                pack_id="",
                pack_version="",
                artefact="",
                sha256="",
                status="failed",
                message=str(exc),
                findings=(Finding("XML", Severity.FATAL, str(exc)),),
                duration_ms=_ms_since(started),
            )
            skipped = [self._skipped(layer, "the document is not readable XML") for layer in plan.layers]
            return ValidationReport.from_layers([unreadable, *skipped], plan.notes)
        document = root.getroottree()
        source = _SaxonSource(root)
        results: list[LayerResult] = []
        for layer in plan.layers:
            if layer.pack is None:
                results.append(self._skipped(layer, layer.missing_reason))
                continue
            if layer.is_xsd:
                results.append(self._run_xsd(layer, document))
            else:
                results.append(self._run_schematron(layer, source))
        return ValidationReport.from_layers(results, plan.notes)

    @staticmethod
    def _identity(layer: PlannedLayer) -> dict[str, Any]:
        assert layer.pack is not None
        rel = layer.pack.layers[layer.role]
        return {
            "layer": layer.name,
            "pack_id": layer.pack.id,
            "pack_version": layer.pack.version,
            "artefact": Path(rel).name,
            "sha256": layer.pack.sha256_of(rel),
        }

    @staticmethod
    def _skipped(layer: PlannedLayer, reason: str) -> LayerResult:
        if layer.pack is not None:
            ident = ValidationEngine._identity(layer)
        else:
            ident = {
                "layer": layer.name,
                "pack_id": layer.pack_id,
                "pack_version": "",
                "artefact": "",
                "sha256": "",
            }
        return LayerResult(**ident, status="not_run", message=reason, advisory=layer.advisory)

    def _run_xsd(self, layer: PlannedLayer, document: etree._ElementTree) -> LayerResult:
        started = time.perf_counter()
        schema = self._artefact(layer)
        ident = self._identity(layer)
        if isinstance(schema, _Failed):
            return LayerResult(**ident, status="error", message=schema.message, advisory=layer.advisory)
        ok = schema.validate(document)
        errors = list(schema.error_log)
        findings = tuple(
            Finding(
                rule_id="XSD",
                severity=Severity.WARNING if layer.advisory else Severity.FATAL,
                message=err.message,
                location=f"line {err.line}, column {err.column}",
                pack=layer.pack_id,
            )
            for err in errors[:MAX_XSD_FINDINGS]
        )
        message = (
            f"{len(errors) - MAX_XSD_FINDINGS} more XSD errors not listed"
            if len(errors) > MAX_XSD_FINDINGS
            else ""
        )
        return LayerResult(
            **ident,
            status="passed" if ok else "failed",
            message=message,
            findings=findings,
            duration_ms=_ms_since(started),
            advisory=layer.advisory,
        )

    def _run_schematron(self, layer: PlannedLayer, source: _SaxonSource) -> LayerResult:
        started = time.perf_counter()
        executable = self._artefact(layer)
        ident = self._identity(layer)
        if isinstance(executable, _Failed):
            return LayerResult(**ident, status="error", message=executable.message, advisory=layer.advisory)
        try:
            node = source.node(self._processor())
            svrl = executable.transform_to_string(xdm_node=node)
            if svrl is None:
                raise RuntimeError("the rule run produced no output")
            findings = parse_svrl(svrl, ident["pack_id"])
        except Exception as exc:  # PySaxonApiError: XPTY0004, FORG0001, ... ; ValueError: not SVRL
            return LayerResult(
                **ident,
                status="error",
                message=f"dynamic error in {ident['artefact']}: {_one_line(exc)}",
                duration_ms=_ms_since(started),
                advisory=layer.advisory,
            )
        if layer.advisory:
            findings = tuple(
                Finding(f.rule_id, Severity.WARNING, f.message, f.location, f.pack) for f in findings
            )
        failed = any(f.severity == Severity.FATAL for f in findings)
        return LayerResult(
            **ident,
            status="failed" if failed else "passed",
            findings=findings,
            duration_ms=_ms_since(started),
            advisory=layer.advisory,
        )


class _SaxonSource:
    """The document as a Saxon tree, built on first use and shared by every Schematron layer of a run.

    Saxon parses the lxml re-serialisation (no DTD, no entities left: what the safe parser accepted), as
    before; a build failure is kept and raised again for every layer that asks.
    """

    def __init__(self, root: etree._Element) -> None:
        self._root = root
        self._node: Any = None
        self._error: Exception | None = None

    def node(self, processor: Any) -> Any:
        if self._error is not None:
            raise self._error
        if self._node is None:
            try:
                self._node = processor.parse_xml(xml_text=etree.tostring(self._root, encoding="unicode"))
            except Exception as exc:  # PySaxonApiError
                self._error = exc
                raise
        return self._node


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
