"""Folder sink: files appear complete or not at all (`.part` + fsync + rename)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.fsutil import write_atomic
from gateway.outbound.base import PermanentSinkError, TransientSinkError
from gateway.store.outbox import OutboxItem


@dataclass(frozen=True)
class FolderSink:
    root: Path

    def write(self, name: str, data: bytes) -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"unsafe output name {name!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / name
        write_atomic(path, data)
        return path

    def remove_partials(self) -> int:
        """Delete `.part` files a crash left behind; returns how many."""
        count = 0
        for part in self.root.glob("*.part"):
            part.unlink(missing_ok=True)
            count += 1
        return count


@dataclass(frozen=True)
class FolderDeliverySink:
    """The `Sink` of a folder: a partner's out/ (`partner:<id>`) or a `[sinks.<id>]` of type folder.

    Writes `<remote_name>.part`, fsyncs, renames: a re-send of the same row rewrites the same name.
    A filesystem error (read-only, full, missing) is transient: the outbox retries it.
    """

    root: Path

    def send(self, item: OutboxItem, payload: bytes) -> str:
        name = item.remote_name
        if "/" in name or name.startswith(".") or "\x00" in name:
            raise PermanentSinkError(f"unsafe output name {name!r}")
        try:
            path = FolderSink(self.root).write(name, payload)
        except OSError as exc:
            raise TransientSinkError(f"{self.root}: {exc.strerror or exc}") from exc
        return f"written {path} ({len(payload)} bytes)"
