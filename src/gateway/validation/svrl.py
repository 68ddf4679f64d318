"""SVRL (Schematron Validation Report Language) output of a rule run -> Findings.

* `svrl:failed-assert` and `svrl:successful-report` both become findings.
* `@id` -> rule id. Without `@id` (the Factur-X packs report forbidden elements, "… is marked as not used
  in the given context", as id-less successful-reports) the id is STABLE: `<pack>:<12 hex>` hashed from the
  pack id, the kind, the `svrl:fired-rule/@context` in force and the assertion's `@test` — properties of
  the rule, never of the document, so the same rule gets the same id on every invoice.
* `@flag` -> severity: `warning`/`information`/`info` -> warning; `fatal`/`error` or no flag -> fatal
  (domain.md §2: a missing flag on a failed-assert or on a Factur-X "not used" report is an error).
"""

from __future__ import annotations

import hashlib
import re

from lxml import etree

from gateway.model import Finding, Severity

SVRL_NS = "http://purl.oclc.org/dsdl/svrl"
_FIRED = f"{{{SVRL_NS}}}fired-rule"
_FAILED = f"{{{SVRL_NS}}}failed-assert"
_REPORT = f"{{{SVRL_NS}}}successful-report"
_TEXT = f"{{{SVRL_NS}}}text"
_WARNING_FLAGS = frozenset({"warning", "warn", "information", "info"})
_SPACES = re.compile(r"\s+")


def stable_rule_id(pack_id: str, kind: str, context: str, test: str) -> str:
    digest = hashlib.sha256("\x1f".join((pack_id, kind, context, test)).encode("utf-8")).hexdigest()
    return f"{pack_id}:{digest[:12]}"


def severity_of(flag: str | None) -> Severity:
    if flag and flag.strip().lower() in _WARNING_FLAGS:
        return Severity.WARNING
    return Severity.FATAL


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=True
    )


def parse_svrl(svrl: bytes | str, pack_id: str) -> tuple[Finding, ...]:
    """Findings of one SVRL document, in document order. Raises ValueError if it is not SVRL."""
    data = svrl.encode("utf-8") if isinstance(svrl, str) else svrl
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"rule output is not XML: {exc}") from None
    if root is None or etree.QName(root).namespace != SVRL_NS:
        raise ValueError("rule output is not SVRL")
    findings: list[Finding] = []
    context = ""
    for element in root.iter(_FIRED, _FAILED, _REPORT):
        if element.tag == _FIRED:
            context = element.get("context", "")
            continue
        kind = "assert" if element.tag == _FAILED else "report"
        rule_id = (element.get("id") or "").strip()
        if not rule_id:
            rule_id = stable_rule_id(pack_id, kind, context, element.get("test", ""))
        text_element = element.find(_TEXT)
        message = _SPACES.sub(
            " ", "".join(text_element.itertext()) if text_element is not None else ""
        ).strip()
        findings.append(
            Finding(
                rule_id=rule_id,
                severity=severity_of(element.get("flag")),
                message=message,
                location=element.get("location", ""),
                pack=pack_id,
            )
        )
    return tuple(findings)
