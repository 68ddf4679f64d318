"""Failed-login policy of the SFTP server: who is locked out, for how long (issue 16, item 8).

Failures are counted twice, within a sliding window of `lockout_seconds`:

* per (source address, user name): `max_failures` lock that user out *from that address* — every
  method, password and key — and a successful login of that user clears only that user's count;
* per source address: `max_address_failures` (over all user names) lock out *password* logins from
  that address, so an address guessing many accounts is stopped, while partners logging in with a key
  from behind the same NAT are not locked out by someone else's password failures.

A successful login never clears the address count (a partner with working credentials cannot reset
the counter between guesses at other accounts). Lockouts are handed to a `LockoutPersistence` (the
store) so a restart does not lift them; failure counts themselves are kept in memory only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from gateway.inbound.sftp_clock import Clock

WHOLE_ADDRESS = ""  # the user name of an address-wide lockout
PRUNE_ABOVE = 10_000  # tracked keys before expired entries are swept


@dataclass(frozen=True)
class Lockout:
    address: str
    username: str  # WHOLE_ADDRESS: password logins of every user from `address`
    until: float  # epoch seconds (Clock.now)
    failures: int


class LockoutPersistence(Protocol):
    """Where lockouts are kept across restarts (`gateway.store.lockouts.StoredLockouts`)."""

    def load(self, now: float) -> list[Lockout]: ...

    def save(self, lockout: Lockout) -> None: ...


class LoginLimiter:
    def __init__(
        self, max_failures: int, max_address_failures: int, lockout_seconds: float, clock: Clock
    ) -> None:
        self._max_failures = max_failures
        self._max_address_failures = max_address_failures
        self._lockout_seconds = lockout_seconds
        self._clock = clock
        self._failures: dict[tuple[str, str], list[float]] = {}  # (address, user) or (address, "")
        self._locked_until: dict[tuple[str, str], float] = {}

    def restore(self, lockouts: Iterable[Lockout]) -> int:
        """Lockouts read back from the store at start; returns how many still run."""
        now = self._clock.now()
        restored = 0
        for lockout in lockouts:
            if lockout.until > now:
                key = (lockout.address, lockout.username)
                self._locked_until[key] = max(lockout.until, self._locked_until.get(key, 0.0))
                restored += 1
        return restored

    def locked(self, address: str, username: str, *, password: bool) -> bool:
        """Is this attempt refused? An address-wide lockout refuses password attempts only."""
        if self._still_locked((address, username)):
            return True
        return password and self._still_locked((address, WHOLE_ADDRESS))

    def _still_locked(self, key: tuple[str, str]) -> bool:
        until = self._locked_until.get(key)
        if until is None:
            return False
        if self._clock.now() < until:
            return True
        del self._locked_until[key]
        return False

    def failure(self, address: str, username: str) -> list[Lockout]:
        """Count one failed attempt; returns the lockouts it starts (none, the user's, the address's)."""
        now = self._clock.now()
        started = []
        for key, limit in (
            ((address, username), self._max_failures),
            ((address, WHOLE_ADDRESS), self._max_address_failures),
        ):
            if key[1] == WHOLE_ADDRESS and username == WHOLE_ADDRESS:
                continue  # an empty user name is counted once, as the address
            recent = [t for t in self._failures.get(key, []) if now - t < self._lockout_seconds]
            recent.append(now)
            if len(recent) >= limit:
                self._failures.pop(key, None)
                until = now + self._lockout_seconds
                self._locked_until[key] = until
                started.append(Lockout(address, key[1], until, len(recent)))
            else:
                self._failures[key] = recent
        self._prune(now)
        return started

    def success(self, address: str, username: str) -> None:
        """A successful login clears that user's count from that address, nothing else."""
        self._failures.pop((address, username), None)

    def _prune(self, now: float) -> None:
        if len(self._failures) + len(self._locked_until) < PRUNE_ABOVE:
            return
        self._locked_until = {k: u for k, u in self._locked_until.items() if u > now}
        self._failures = {
            k: ts for k, ts in self._failures.items() if ts and now - ts[-1] < self._lockout_seconds
        }
