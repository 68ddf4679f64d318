"""What every sink is: `send(item, payload) -> receipt`, two error classes, and the resolver by sink id.

A sink delivers one outbox row's payload under `item.remote_name` (deterministic: sending the same row
twice writes the same name, so a crash between "sent" and "recorded" yields no second file). It raises
`TransientSinkError` for what a retry may cure (a server down, a full disk) and `PermanentSinkError`
for what it cannot (the remote refuses the file); anything else is treated as transient by the worker.

Sink ids (architecture.md, "One outbox for everything that leaves later"): `partner:<partner id>` (that
partner's out/ folder), `webhook:<id>`, `as2:<partner id>`, or the `<id>` of a `[sinks.<id>]` section.
The composition root registers a factory per prefix and one sink per configured section.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from gateway.store.outbox import OutboxItem

__all__ = [
    "OutboxItem",
    "PermanentSinkError",
    "Sink",
    "SinkFactory",
    "SinkResolver",
    "TransientSinkError",
    "UnknownSinkError",
]


@runtime_checkable
class Sink(Protocol):
    def send(self, item: OutboxItem, payload: bytes) -> str: ...


class TransientSinkError(Exception):
    """Retried with backoff."""


class PermanentSinkError(Exception):
    """The row is dead at once (acks excepted: they are retried forever)."""


class UnknownSinkError(PermanentSinkError):
    """No sink answers to this id (no such `[sinks.<id>]`, no factory for its prefix)."""


SinkFactory = Callable[[str], Sink]  # gets the part after the prefix: "acme" for "partner:acme"


class SinkResolver:
    """Sink id → Sink. Prefix factories (`partner:`, `webhook:`, `as2:`) and named sinks; thread-safe,
    each sink built once and reused."""

    def __init__(self) -> None:
        self._factories: dict[str, SinkFactory] = {}
        self._named: dict[str, Sink] = {}
        self._built: dict[str, Sink] = {}
        self._lock = threading.Lock()

    def register_prefix(self, prefix: str, factory: SinkFactory) -> None:
        if not prefix.endswith(":"):
            raise ValueError(f"a sink prefix ends with ':' ({prefix!r})")
        self._factories[prefix] = factory

    def register(self, sink_id: str, sink: Sink) -> None:
        if ":" in sink_id:
            raise ValueError(f"a named sink id has no ':' ({sink_id!r})")
        self._named[sink_id] = sink

    def known(self, sink_id: str) -> bool:
        if sink_id in self._named:
            return True
        prefix, sep, _rest = sink_id.partition(":")
        return bool(sep) and f"{prefix}:" in self._factories

    def resolve(self, sink_id: str) -> Sink:
        if sink_id in self._named:
            return self._named[sink_id]
        with self._lock:
            sink = self._built.get(sink_id)
            if sink is not None:
                return sink
            prefix, sep, rest = sink_id.partition(":")
            factory = self._factories.get(f"{prefix}:") if sep else None
            if factory is None or not rest:
                raise UnknownSinkError(f"no sink {sink_id!r} (not a [sinks.<id>] section, no such prefix)")
            sink = factory(rest)
            self._built[sink_id] = sink
            return sink

    def close(self) -> None:
        """Close sinks that hold connections (those with a `close()` method)."""
        for sink in [*self._named.values(), *self._built.values()]:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
