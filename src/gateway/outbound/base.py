"""Sink protocol of the outbox (BRIEF interface 2). Provisional copy written by the `push` helper from the
BRIEF's description; the `delivery` helper owns this module and its version wins on merge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class OutboxItem:
    id: int
    kind: str
    sink: str
    remote_name: str
    payload_sha256: str | None
    flow_id: str | None
    invoice_id: int | None
    meta: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


class Sink(Protocol):
    def send(self, item: OutboxItem, payload: bytes) -> str: ...  # returns a receipt text


class TransientSinkError(Exception):
    """Retried with backoff."""


class PermanentSinkError(Exception):
    """Dead at once."""
