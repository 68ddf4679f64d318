"""Drop-folder source: a periodic scan is the truth, watchdog events only wake the scan early.

A file is taken once it is *stable*: not a temporary name, and its (size, mtime) unchanged for
`min_age` seconds across two looks. Taking it is the intake's job (claim by atomic rename).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TEMP_SUFFIXES = (".part", ".filepart", ".tmp")


def is_temporary_name(name: str) -> bool:
    """Names a writer is still working on: `*.part`, `*.filepart`, `*.tmp`, `~*` and dot-files."""
    return name.startswith((".", "~")) or name.lower().endswith(TEMP_SUFFIXES)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time this (size, mtime) was first seen


@dataclass
class StabilityTracker:
    """Remembers what each scan saw; pure apart from the clock value passed in."""

    min_age: float
    seen: dict[Path, _Seen] = field(default_factory=dict)

    def observe(self, path: Path, size: int, mtime_ns: int, now: float, wall_now: float) -> bool:
        """Record one look at `path`; True when it is stable and may be taken."""
        previous = self.seen.get(path)
        if previous is None or (previous.size, previous.mtime_ns) != (size, mtime_ns):
            self.seen[path] = _Seen(size, mtime_ns, now)
            return False
        unchanged_for = now - previous.since
        untouched_for = wall_now - mtime_ns / 1e9
        return unchanged_for >= self.min_age and untouched_for >= self.min_age

    def forget(self, path: Path) -> None:
        self.seen.pop(path, None)

    def prune(self, present: set[Path]) -> None:
        for path in list(self.seen):
            if path not in present:
                del self.seen[path]

    def next_check_in(self, now: float) -> float | None:
        """Seconds until the earliest pending file could become stable."""
        if not self.seen:
            return None
        return max(0.0, min(s.since for s in self.seen.values()) + self.min_age - now)


def scan_inbox(inbox: Path) -> Iterator[tuple[Path, os.stat_result]]:
    try:
        entries = list(os.scandir(inbox))
    except FileNotFoundError:
        return
    for entry in entries:
        if is_temporary_name(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            yield Path(entry.path), entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue


class FolderSource:
    """Scans partner inboxes and hands stable files to `take(partner, path)`."""

    def __init__(
        self,
        inboxes: Mapping[str, Path],
        min_age: float,
        scan_interval: float,
        take: Callable[[str, Path], object],
        watch: bool = True,
    ) -> None:
        self.inboxes = dict(inboxes)
        self.scan_interval = scan_interval
        self.take = take
        self.tracker = StabilityTracker(min_age)
        self.wake = threading.Event()
        self.watch = watch
        self._observer: object | None = None

    def start_watching(self) -> None:
        if not self.watch:
            return
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self.wake

        class _Hint(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        observer = Observer()
        for inbox in self.inboxes.values():
            observer.schedule(_Hint(), str(inbox), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop_watching(self) -> None:
        observer = self._observer
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=5)  # type: ignore[attr-defined]
            self._observer = None

    def scan_once(self) -> int:
        """One pass over every inbox; returns how many files were handed over."""
        now, wall_now = time.monotonic(), time.time()
        present: set[Path] = set()
        taken = 0
        for partner, inbox in self.inboxes.items():
            for path, st in scan_inbox(inbox):
                present.add(path)
                if self.tracker.observe(path, st.st_size, st.st_mtime_ns, now, wall_now):
                    self.tracker.forget(path)
                    self.take(partner, path)
                    taken += 1
        self.tracker.prune(present)
        return taken
