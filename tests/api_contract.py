"""Check HTTP answers against the AFNOR Flow Service 1.3.0 OpenAPI file (../shared, else the bundled copy).

`Contract.check(method, template, response)`: the status is documented for the operation, the
content type is one it documents, and a JSON body validates against the documented schema (OpenAPI
3.0 schema rules, formats included).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
from openapi_schema_validator import OAS30Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

REPO = Path(__file__).resolve().parents[1]
SPEC_NAME = "flow-service-1.3.0.json"
SPEC_URI = "urn:test:flow-service"


def spec_path() -> Path:
    for shared in (os.environ.get("GATEWAY_SHARED_DIR", ""), str(REPO.parent / "shared")):
        if shared and (Path(shared) / "artefacts/france-rfe-1.4.0/api" / SPEC_NAME).is_file():
            return Path(shared) / "artefacts/france-rfe-1.4.0/api" / SPEC_NAME
    return REPO / "src/gateway/api" / SPEC_NAME  # the unchanged copy shipped with the gateway


class Contract:
    def __init__(self) -> None:
        self.path = spec_path()
        self.document: dict[str, Any] = json.loads(self.path.read_text())
        # Defect of the standard's file: ReasonCode is `oneOf: [ReasonCodeEnum, {type: string}]`, so every
        # enum value (EmptyFlow, …) matches both branches and fails `oneOf`; only codes outside the enum
        # would pass. The description says "a predefined set of values + ability to extend": `anyOf`.
        reason = self.document["components"]["schemas"]["ReasonCode"]
        reason["anyOf"] = reason.pop("oneOf")
        self.registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, DRAFT4.create_resource(self.document)
        )

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    def validate_schema(self, schema: dict[str, Any], value: Any) -> None:
        rooted = json.loads(json.dumps(schema).replace('"#/components/', f'"{SPEC_URI}#/components/'))
        validator = OAS30Validator(
            rooted, registry=self.registry, format_checker=OAS30Validator.FORMAT_CHECKER
        )
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])

    def validate_component(self, name: str, value: Any) -> None:
        self.validate_schema({"$ref": f"#/components/schemas/{name}"}, value)

    def check(self, method: str, template: str, response: httpx.Response) -> Any:
        """Validate one answer; returns its parsed JSON body (None when it has none)."""
        operation = self.document["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], (
            f"{method} {template} answered {status}, not documented: {response.text[:300]}"
        )
        documented = self._resolve(operation["responses"][status])
        content = documented.get("content")
        if not content:
            assert response.content == b"", f"{status} documents no body, got {response.content[:100]!r}"
            return None
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in content, (
            f"{method} {template} {status}: content type {media!r} not in {list(content)}"
        )
        for name, header in documented.get("headers", {}).items():
            if media == "application/octet-stream" and name.lower() == "content-disposition":
                assert re.search(header["schema"]["pattern"], response.headers.get(name, "")), name
        schema = content[media].get("schema")
        if media != "application/json":
            return None
        body = response.json()
        if schema:
            self.validate_schema(schema, body)
        return body
