"""Connection counting and limits of the SFTP server (issue 16, item 10).

* `max_connections` SSH connections at once, authenticated or not;
* `max_unauthenticated_per_address` connections not yet authenticated per source address;
* `max_unauthenticated` connections not yet authenticated in all (default half of `max_connections`),
  so the rest of `max_connections` stays for authenticated partners.

When the server is full (in all, or of unauthenticated connections) a new connection takes the place of
the oldest unauthenticated connection of the address holding the most of them, provided that address
is another one and holds at least as many as the newcomer's address would: idle pre-auth sockets
from a few addresses cannot keep partners out. Otherwise the newcomer is refused. Refused and evicted
connections are closed before any SSH work (no version line). Also counted here: each partner's
authenticated connections (`max_sessions`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from gateway.inbound.sftp_clock import Clock
from gateway.inbound.sftp_config import SftpServerConfig

REFUSAL_LOG_SECONDS = 10.0  # a flood of refused connections logs one line per interval, with a count


@dataclass
class Admission:
    accepted: bool
    refusal: str | None = None  # too_many_unauthenticated | too_many_connections | unauthenticated_full
    limit: dict[str, int] = field(default_factory=dict)
    evicted: list[tuple[Hashable, str]] = field(default_factory=list)  # (connection, its address)


class ConnectionLimits:
    def __init__(self, config: SftpServerConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._max_unauthenticated = config.unauthenticated_limit()
        self._authenticated: set[Hashable] = set()
        self._unauthenticated: dict[str, dict[Hashable, float]] = {}  # address -> conn -> opened at
        self._partner_sessions: dict[str, int] = {}

    # ---- connections ---------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._authenticated) + self.unauthenticated_total

    @property
    def unauthenticated_total(self) -> int:
        return sum(len(conns) for conns in self._unauthenticated.values())

    def unauthenticated_count(self, address: str) -> int:
        return len(self._unauthenticated.get(address, {}))

    def admit(self, conn: Hashable, address: str) -> Admission:
        """Count a new, not yet authenticated connection, or say why not."""
        config = self._config
        mine = self.unauthenticated_count(address)
        if mine >= config.max_unauthenticated_per_address:
            return Admission(
                False,
                "too_many_unauthenticated",
                {"max_unauthenticated_per_address": config.max_unauthenticated_per_address},
            )
        evicted: list[tuple[Hashable, str]] = []
        full = self.connection_count >= config.max_connections
        if full or self.unauthenticated_total >= self._max_unauthenticated:
            victim = self._victim(address, mine + 1)
            if victim is None:
                if full:
                    return Admission(
                        False, "too_many_connections", {"max_connections": config.max_connections}
                    )
                return Admission(
                    False, "unauthenticated_full", {"max_unauthenticated": self._max_unauthenticated}
                )
            self.closed(*victim)
            evicted.append(victim)
        self._unauthenticated.setdefault(address, {})[conn] = self._clock.monotonic()
        return Admission(True, evicted=evicted)

    def _victim(self, address: str, newcomer_count: int) -> tuple[Hashable, str] | None:
        best: tuple[int, float, Hashable, str] | None = None  # (-count, opened, conn, address)
        for other, conns in self._unauthenticated.items():
            if other == address or not conns or len(conns) < newcomer_count:
                continue
            oldest_conn, opened = next(iter(conns.items()))  # insertion order: oldest first
            candidate = (-len(conns), opened, oldest_conn, other)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return None if best is None else (best[2], best[3])

    def authenticated(self, conn: Hashable, address: str) -> None:
        """The connection logged in: it no longer counts as unauthenticated (it still counts in all)."""
        if self._forget_unauthenticated(conn, address):
            self._authenticated.add(conn)

    def closed(self, conn: Hashable, address: str) -> None:
        """The connection ended (or was evicted); calling it twice is harmless."""
        self._forget_unauthenticated(conn, address)
        self._authenticated.discard(conn)

    def _forget_unauthenticated(self, conn: Hashable, address: str) -> bool:
        conns = self._unauthenticated.get(address)
        if conns is None or conns.pop(conn, None) is None:
            return False
        if not conns:
            del self._unauthenticated[address]
        return True

    # ---- partner sessions ------------------------------------------------------------------------

    def partner_session_count(self, partner_id: str) -> int:
        return self._partner_sessions.get(partner_id, 0)

    def claim_session(self, partner_id: str, max_sessions: int) -> bool:
        if self.partner_session_count(partner_id) >= max_sessions:
            return False
        self._partner_sessions[partner_id] = self.partner_session_count(partner_id) + 1
        return True

    def release_session(self, partner_id: str) -> None:
        remaining = self.partner_session_count(partner_id) - 1
        if remaining > 0:
            self._partner_sessions[partner_id] = remaining
        else:
            self._partner_sessions.pop(partner_id, None)


class RefusalLog:
    """Warnings for refused connections, at most one line per kind per interval, with a count."""

    def __init__(self, log: Any, clock: Clock) -> None:
        self._log = log
        self._clock = clock
        self._unlogged: dict[str, int] = {}  # result -> refusals since that kind's last line
        self._logged_at: dict[str, float] = {}

    def refused(self, result: str, address: str, **limit: int) -> None:
        self._unlogged[result] = self._unlogged.get(result, 0) + 1
        now = self._clock.monotonic()
        logged_at = self._logged_at.get(result)
        if logged_at is not None and now - logged_at < REFUSAL_LOG_SECONDS:
            return
        self._log.warning(
            "sftp.connection_refused",
            address=address,
            result=result,
            **limit,
            refused=self._unlogged[result],  # since the previous line of this kind
        )
        self._unlogged[result] = 0
        self._logged_at[result] = now
