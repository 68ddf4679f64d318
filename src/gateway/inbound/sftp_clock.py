"""The clock the SFTP server reads: injected, so tests move time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Two readings: `monotonic()` for durations and timers, `now()` (epoch seconds) for what is stored."""

    def monotonic(self) -> float: ...

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()
