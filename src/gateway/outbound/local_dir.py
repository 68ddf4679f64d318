"""Folder sink: files appear complete or not at all (`.part` + fsync + rename)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.fsutil import write_atomic


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
