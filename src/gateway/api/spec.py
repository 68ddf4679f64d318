"""The AFNOR Flow Service 1.3.0 OpenAPI document shipped with the gateway, and validators for its schemas.

Requests (flowInfo, search parameters, webhook parameters) are validated against the standard's own
schemas rather than a re-typed copy, so the gateway accepts exactly what the standard describes.
"""

from __future__ import annotations

import json
from functools import cached_property
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SPEC_FILE = "flow-service-1.3.0.json"
SPEC_URI = "urn:afnor:flow-service:1.3.0"


class FlowServiceSpec:
    """Loaded once per application (no module state); `errors(name, value)` lists schema violations."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        if document is None:
            text = resources.files("gateway.api").joinpath(SPEC_FILE).read_text("utf-8")
            document = json.loads(text)
        self.document: dict[str, Any] = document
        self._validators: dict[str, Draft7Validator] = {}

    @cached_property
    def _registry(self) -> Registry[Any]:
        resource: Resource[Any] = DRAFT7.create_resource(self.document)
        registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        return registry

    def schema(self, name: str) -> dict[str, Any]:
        schema: dict[str, Any] = self.document["components"]["schemas"][name]
        return schema

    def enum(self, name: str) -> list[str]:
        return list(self.schema(name)["enum"])

    def validator(self, name: str) -> Draft7Validator:
        if name not in self._validators:
            ref = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
            self._validators[name] = Draft7Validator(ref, registry=self._registry)
        return self._validators[name]

    def errors(self, name: str, value: Any) -> list[str]:
        """Human-readable violations of components/schemas/<name> (empty when valid)."""
        found = []
        for error in sorted(self.validator(name).iter_errors(value), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(body)"
            found.append(f"{where}: {error.message[:200]}")
        return found
