"""The path jail of the SFTP server: a partner sees `/in` and `/out`, mapped onto its real folders.

Paths are normalised against the virtual root (`..` cannot climb above it), then resolved with
symlinks; anything whose real path leaves the partner's `in/` or `out/` folder is refused. In `/in`
there are no subfolders; dot-files are hidden everywhere, temporary names (the gateway's own writes in
progress) in `/out`. `PartnerArea` also knows what a partner stores (quota) and what it just uploaded.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asyncssh import SFTPNoSuchFile, SFTPPermissionDenied

from gateway.inbound.sftp_clock import Clock
from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig

TEMP_UPLOAD_PREFIX = ".sftp-"
RECENT_UPLOADS_KEPT = 1000
RECENT_UPLOAD_SECONDS = 120.0
USAGE_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class SftpPartner:
    """One partner account: `root` holds `in/` and `out/`."""

    partner_id: str
    root: Path
    auth: SftpPartnerAuth


@dataclass
class RecentUpload:
    size: int
    mtime: float
    expires: float


@dataclass(frozen=True)
class Location:
    """A client path mapped into the jail. `area` is "" (the virtual root), "in" or "out"."""

    vpath: str
    area: str
    rest: tuple[str, ...]
    local: Path  # area folder joined with `rest`, symlinks not resolved
    real: Path  # fully resolved; inside the area folder


def virtual_parts(path: bytes) -> tuple[str, ...]:
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise SFTPNoSuchFile("file names must be UTF-8") from None
    if "\x00" in text:
        raise SFTPNoSuchFile("invalid file name")
    normalised = posixpath.normpath(posixpath.join("/", text))
    return tuple(part for part in normalised.split("/") if part)


def inside(real: Path, base: Path) -> bool:
    return real == base or base in real.parents


class PartnerArea:
    """A partner's folders (real paths) and what is stored or being uploaded there."""

    def __init__(self, partner: SftpPartner, config: SftpServerConfig, clock: Clock) -> None:
        self.partner = partner
        self.config = config
        self._clock = clock
        root = Path(partner.root)
        (root / "in").mkdir(parents=True, exist_ok=True)
        (root / "out").mkdir(parents=True, exist_ok=True)
        self.root = Path(os.path.realpath(root))
        self.in_dir = Path(os.path.realpath(root / "in"))
        self.out_dir = Path(os.path.realpath(root / "out"))
        self.inflight: dict[int, int] = {}  # id(upload handle) -> bytes written so far
        self.open_handles = 0  # file handles of every session of this partner
        self.recent: OrderedDict[str, RecentUpload] = OrderedDict()
        self._stored: int | None = None
        self._stored_at = 0.0

    # ---- names and paths -------------------------------------------------------------------------

    def is_temp_name(self, name: str) -> bool:
        return name.lower().endswith(tuple(s.lower() for s in self.config.upload_temp_suffixes)) or (
            name.startswith(self.config.upload_temp_prefixes)
        )

    def hidden(self, area: str, name: str) -> bool:
        if name.startswith("."):
            return True
        return area == "out" and self.is_temp_name(name)

    def locate(self, path: bytes, on_escape: Callable[[str], None]) -> Location:
        """Map a client path; `on_escape(vpath)` is called (then refused) when symlinks lead out."""
        parts = virtual_parts(path)
        vpath = "/" + "/".join(parts)
        if not parts:
            return Location(vpath, "", (), self.root, self.root)
        area, rest = parts[0], parts[1:]
        if area == "in":
            base = self.in_dir
            if len(rest) > 1:
                raise SFTPNoSuchFile(f"{vpath}: no such file (in/ has no subfolders)")
        elif area == "out":
            base = self.out_dir
        else:
            raise SFTPNoSuchFile(f"{vpath}: no such file (only /in and /out exist)")
        if any(self.hidden(area, name) for name in rest):
            raise SFTPNoSuchFile(f"{vpath}: no such file")
        local = base.joinpath(*rest)
        real = Path(os.path.realpath(local))
        if not inside(real, base):
            on_escape(vpath)
            raise SFTPPermissionDenied(f"{vpath}: permission denied")
        return Location(vpath, area, rest, local, real)

    # ---- what is stored ----------------------------------------------------------------------------

    def remove_stale_temps(self) -> int:
        """Temporary files left by a crash: never published, so never taken."""
        removed = 0
        with os.scandir(self.in_dir) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_UPLOAD_PREFIX) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def usage(self) -> int:
        """Bytes stored in in/ + out/ plus bytes of uploads in flight (scan cached a moment)."""
        now = self._clock.monotonic()
        if self._stored is None or now - self._stored_at > USAGE_CACHE_SECONDS:
            self._stored = tree_bytes(self.in_dir, skip_prefix=TEMP_UPLOAD_PREFIX) + tree_bytes(
                self.out_dir, skip_prefix=None
            )
            self._stored_at = now
        return self._stored + sum(self.inflight.values())

    def stored_changed(self) -> None:
        self._stored = None

    def remember(self, name: str, size: int) -> None:
        """Clients often stat a file right after uploading it; the watcher may already have taken it."""
        self.recent.pop(name, None)
        self.recent[name] = RecentUpload(
            size, self._clock.now(), self._clock.monotonic() + RECENT_UPLOAD_SECONDS
        )
        while len(self.recent) > RECENT_UPLOADS_KEPT:
            self.recent.popitem(last=False)

    def recently_uploaded(self, name: str) -> RecentUpload | None:
        entry = self.recent.get(name)
        if entry is None or entry.expires < self._clock.monotonic():
            return None
        return entry


def tree_bytes(top: Path, skip_prefix: str | None) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            if skip_prefix and name.startswith(skip_prefix):
                continue
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total
