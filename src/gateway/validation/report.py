"""Validation results: one LayerResult per planned layer, a ValidationReport per document.

Outcome (issue 11 §4):
* `invalid` — at least one fatal finding in an enforcing layer (even if another layer could not run);
* `not_validated` — no fatal finding, but an enforcing layer did not complete (pack missing, compile
  error, Saxon dynamic error such as XPTY0004, timeout, crashed worker): never counted as passed;
* `valid` — every enforcing layer ran and passed (warnings allowed).
Advisory layers (`warning_packs`) never change the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree

from gateway.model import Finding, ReasonCode, Severity

SVRL_NS = "http://purl.oclc.org/dsdl/svrl"
LayerStatus = Literal["passed", "failed", "not_run", "error"]
Outcome = Literal["valid", "invalid", "not_validated"]


@dataclass(frozen=True)
class LayerResult:
    layer: str
    pack_id: str
    pack_version: str
    artefact: str  # file name of the XSD / XSLT
    sha256: str
    status: LayerStatus
    message: str = ""
    findings: tuple[Finding, ...] = ()
    duration_ms: float = 0.0
    advisory: bool = False

    @property
    def completed(self) -> bool:
        return self.status in ("passed", "failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "pack_id": self.pack_id,
            "pack_version": self.pack_version,
            "artefact": self.artefact,
            "sha256": self.sha256,
            "status": self.status,
            "message": self.message,
            "advisory": self.advisory,
            "duration_ms": round(self.duration_ms, 3),
            "findings": [f.to_dict() for f in self.findings],
        }


def decide_outcome(layers: Iterable[LayerResult]) -> Outcome:
    enforcing = [layer for layer in layers if not layer.advisory]
    if any(f.severity == Severity.FATAL for layer in enforcing for f in layer.findings):
        return "invalid"
    if not enforcing or any(not layer.completed for layer in enforcing):
        return "not_validated"
    return "valid"


@dataclass(frozen=True)
class ValidationReport:
    outcome: Outcome
    layers: tuple[LayerResult, ...]
    notes: tuple[str, ...] = ()

    @classmethod
    def from_layers(cls, layers: Iterable[LayerResult], notes: Iterable[str] = ()) -> ValidationReport:
        layers = tuple(layers)
        return cls(outcome=decide_outcome(layers), layers=layers, notes=tuple(notes))

    @classmethod
    def not_validated(cls, cause: str, notes: Iterable[str] = ()) -> ValidationReport:
        """A whole document that could not be validated (timeout, crashed worker, no plan)."""
        layer = LayerResult(
            layer="validation",
            pack_id="",
            pack_version="",
            artefact="",
            sha256="",
            status="error",
            message=cause,
        )
        return cls(outcome="not_validated", layers=(layer,), notes=tuple(notes))

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for layer in self.layers for f in layer.findings)

    @property
    def fatal_findings(self) -> tuple[Finding, ...]:
        return tuple(
            f
            for layer in self.layers
            if not layer.advisory
            for f in layer.findings
            if f.severity == Severity.FATAL
        )

    @property
    def accepted(self) -> bool:
        return self.outcome == "valid"

    @property
    def reason(self) -> ReasonCode | None:
        """Reason code of a rejection: REJ_SEMAN, whether invalid or not validated (the outcome tells which)."""
        return None if self.outcome == "valid" else ReasonCode.SEMANTIC

    @property
    def causes(self) -> tuple[str, ...]:
        """Why enforcing layers did not complete (empty when they all ran)."""
        return tuple(
            f"{layer.layer}: {layer.message}"
            for layer in self.layers
            if not layer.advisory and not layer.completed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": str(self.reason) if self.reason else None,
            "fatal_count": len(self.fatal_findings),
            "warning_count": sum(1 for f in self.findings if f.severity == Severity.WARNING),
            "notes": list(self.notes),
            "causes": list(self.causes),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def summary_text(self, max_findings: int = 20) -> str:
        lines = [f"outcome: {self.outcome}" + (f" ({self.reason})" if self.reason else "")]
        lines.extend(f"note: {note}" for note in self.notes)
        for layer in self.layers:
            pack = f"{layer.pack_id}@{layer.pack_version}" if layer.pack_id else "-"
            tag = " [advisory]" if layer.advisory else ""
            fatal = sum(1 for f in layer.findings if f.severity == Severity.FATAL)
            warn = len(layer.findings) - fatal
            lines.append(
                f"  {layer.layer}{tag}: {layer.status} — {pack} {layer.artefact} "
                f"sha256:{layer.sha256[:12]} ({fatal} fatal, {warn} warning, {layer.duration_ms:.0f} ms)"
            )
            if layer.message:
                lines.append(f"    {layer.message}")
            shown = [f for f in layer.findings if f.severity == Severity.FATAL][:max_findings]
            for finding in shown:
                lines.append(f"    [{finding.rule_id}] {finding.message} @ {finding.location}")
            if fatal > len(shown):
                lines.append(f"    … {fatal - len(shown)} more fatal findings")
        return "\n".join(lines)

    def to_svrl(self) -> bytes:
        """All layers as one SVRL document: one active-pattern per layer, findings as failed-asserts."""
        nsmap = {"svrl": SVRL_NS}
        root = etree.Element(
            f"{{{SVRL_NS}}}schematron-output",
            nsmap=nsmap,
            title=f"gateway validation: {self.outcome}",
            schemaVersion="gateway-combined-1",
        )
        for layer in self.layers:
            text = etree.SubElement(root, f"{{{SVRL_NS}}}text")
            text.text = (
                f"{layer.layer}: {layer.status} ({layer.pack_id}@{layer.pack_version} {layer.artefact} "
                f"sha256={layer.sha256}){' ' + layer.message if layer.message else ''}"
            )
        for layer in self.layers:
            etree.SubElement(
                root,
                f"{{{SVRL_NS}}}active-pattern",
                id=layer.layer,
                name=f"{layer.pack_id}@{layer.pack_version}",
                document=layer.artefact,
            )
            if not layer.findings:
                continue
            etree.SubElement(root, f"{{{SVRL_NS}}}fired-rule", context="/", id=f"{layer.layer}-findings")
            for finding in layer.findings:
                assertion = etree.SubElement(
                    root,
                    f"{{{SVRL_NS}}}failed-assert",
                    id=finding.rule_id,
                    flag=str(finding.severity),
                    location=finding.location,
                    test=finding.pack or layer.pack_id,
                )
                etree.SubElement(assertion, f"{{{SVRL_NS}}}text").text = finding.message
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
