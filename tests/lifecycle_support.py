"""Helpers of the lifecycle tests: where ../shared is, the installed br-fr-cdv pack, a CDAR validator."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model import Syntax
from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import ValidationConfig
from gateway.validation.report import ValidationReport
from gateway.validation.rulepacks import RulePackRegistry

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repository (main checkout) or beside the worktrees' parent (/work/wt/<name>)
SHARED = next((p for p in (REPO.parent / "shared", REPO.parents[1] / "shared") if p.is_dir()), REPO / "none")
FRANCE_RFE = SHARED / "artefacts" / "france-rfe-1.4.0"
CDAR_CORPUS = SHARED / "corpus" / "ph-cii" / "ph-cii-testfiles" / "src" / "main" / "resources" / "external"
CDAR_CORPUS = CDAR_CORPUS / "test-cdar" / "d22b"


def require_france_rfe() -> Path:
    if not FRANCE_RFE.is_dir():
        pytest.skip(f"France_RFE artefacts not found at {FRANCE_RFE}")
    return FRANCE_RFE


def cdar_registry(rules_dir: Path) -> RulePackRegistry:
    registry = RulePackRegistry(rules_dir)
    registry.install(require_france_rfe())
    return registry


class CdarValidator:
    """The gateway's own engine with the official France_RFE pack installed."""

    def __init__(self, rules_dir: Path) -> None:
        self.engine = ValidationEngine(ValidationConfig(), cdar_registry(rules_dir))

    def validate(self, xml: bytes) -> ValidationReport:
        return self.engine.validate(xml, Syntax.CDAR, None)

    def fatal(self, xml: bytes) -> list[str]:
        report = self.validate(xml)
        return [
            f"{f.rule_id}: {f.message[:160]}"
            for layer in report.layers
            for f in layer.findings
            if f.severity == "fatal"
        ] + [
            f"{layer.layer}: {layer.status} {layer.message}"
            for layer in report.layers
            if layer.status in ("error", "not_run")
        ]
