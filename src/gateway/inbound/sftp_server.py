"""The gateway's embedded SFTP server (asyncssh): partners drop flows in `/in`, fetch acks from `/out`.

Each partner is jailed in a virtual tree of two folders mapped onto `<partner root>/in` and
`<partner root>/out`:

* `/in` — write new files and list. An upload is written to a hidden temporary file in `in/`
  (`.sftp-<random>.upload`, invisible to the client and ignored by the folder watcher) and published
  under its real name by an atomic, non-replacing link the moment the client *closes* the handle;
  `on_upload(partner_id, final_path)` is then called in the event loop thread. A connection lost
  before the close never publishes anything: the temporary file is deleted.
  A temporary name (`*.part`, `*.filepart`, `*.tmp`, `~*`: WinSCP and friends) is published under
  that name on close (the watcher ignores it) and taken when the client renames it to its final name.
  Name collisions: while `in/X` exists (not taken yet) a new upload of `X` is refused with a failure
  status (at open, or at close if a concurrent upload won the race); files are never overwritten and
  never silently renamed. Resume (append, reopening an existing file, writes that leave a hole) is
  refused. Only temporary names may be renamed or deleted in `/in`; nothing there can be read.
* `/out` — read, list, delete. Dot-files and temporary names (the gateway's own writes in progress)
  are hidden.

Paths are normalised against the virtual root (`..` cannot climb above it), then resolved with
symlinks; anything whose real path leaves the partner's `in/` or `out/` folder is refused. No links,
directories, shell, exec, scp, port/agent/X11 forwarding. Failed logins are counted per source address
and lock that address out for a while.

Limits: at most `max_connections` SSH connections at once (authenticated or not; one more is closed
as soon as it is accepted, before any handshake work, and counted as `too_many_connections`), at most
`max_unauthenticated_per_address` connections not yet authenticated per source address (one more from
that address is closed the same way, `too_many_unauthenticated`; the address's count goes down when
one of them authenticates or ends), at most
`max_sessions` authenticated connections per partner (one more is refused at authentication,
`too_many_sessions`; a slot is freed when its connection ends, however it ends), and a connection
not authenticated within `login_timeout_seconds` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import posixpath
import secrets
import stat
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any

import asyncssh
import asyncssh.sftp
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from asyncssh import (
    FXF_APPEND,
    FXF_CREAT,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    SFTPAttrs,
    SFTPFailure,
    SFTPName,
    SFTPNoSuchFile,
    SFTPOpUnsupported,
    SFTPPermissionDenied,
)

from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig
from gateway.telemetry.metrics import Metrics

TEMP_UPLOAD_PREFIX = ".sftp-"
RECENT_UPLOADS_KEPT = 1000
RECENT_UPLOAD_SECONDS = 120.0
USAGE_CACHE_SECONDS = 2.0
NAME_MAX_BYTES = 255
REFUSAL_LOG_SECONDS = 10.0  # a flood of refused connections logs one line per interval, with a count


@dataclass(frozen=True)
class SftpPartner:
    """One partner account: `root` holds `in/` and `out/`."""

    partner_id: str
    root: Path
    auth: SftpPartnerAuth


def hash_password(password: str) -> str:
    """The argon2id hash to put in a partner's `password_hash`."""
    if not password:
        raise ValueError("empty password")
    return PasswordHasher().hash(password)


def _client_close_code() -> CodeType:
    """Code object of asyncssh's handler for a client's FXP_CLOSE request.

    asyncssh calls `SFTPServer.close()` both when the client closes a handle and when it cleans up
    the handles of a lost session; only the former may publish an upload. We tell them apart by the
    caller, and fail loudly at construction if asyncssh's internals no longer match (a rename there
    would make every upload fail, never publish a broken one).
    """
    handler = getattr(asyncssh.sftp, "SFTPServerHandler", None)
    code = getattr(getattr(handler, "_process_close", None), "__code__", None)
    if not isinstance(code, CodeType):
        raise RuntimeError("unsupported asyncssh version: SFTPServerHandler._process_close not found")
    return code


def _load_or_create_host_key(path: Path) -> tuple[asyncssh.SSHKey, bool]:
    """Read the host key, or generate an ed25519 key there (mode 0600) on first start."""
    if path.exists():
        return asyncssh.read_private_key(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key.export_private_key())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces a key another process wrote meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return asyncssh.read_private_key(path), True


class _RefusalLog:
    """Warnings for refused connections, at most one line per kind per interval, with a count."""

    def __init__(self, log: Any, clock: Callable[[], float]) -> None:
        self._log = log
        self._clock = clock
        self._unlogged: dict[str, int] = {}  # result -> refusals since that kind's last line
        self._logged_at: dict[str, float] = {}

    def refused(self, result: str, address: str, **limit: int) -> None:
        self._unlogged[result] = self._unlogged.get(result, 0) + 1
        now = self._clock()
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


class _LoginLimiter:
    """Failed logins per source address; `max_failures` within `lockout_seconds` lock the address out."""

    def __init__(self, max_failures: int, lockout_seconds: float, clock: Callable[[], float]) -> None:
        self._max_failures = max_failures
        self._lockout_seconds = lockout_seconds
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, address: str) -> bool:
        until = self._locked_until.get(address)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._locked_until[address]
        return False

    def failure(self, address: str) -> bool:
        """Count one failure; True when it starts a lockout."""
        now = self._clock()
        recent = [t for t in self._failures.get(address, []) if now - t < self._lockout_seconds]
        recent.append(now)
        if len(recent) >= self._max_failures:
            self._failures.pop(address, None)
            self._locked_until[address] = now + self._lockout_seconds
            self._prune(now)
            return True
        self._failures[address] = recent
        self._prune(now)
        return False

    def success(self, address: str) -> None:
        self._failures.pop(address, None)

    def _prune(self, now: float) -> None:
        if len(self._failures) + len(self._locked_until) < 10_000:
            return
        self._locked_until = {a: u for a, u in self._locked_until.items() if u > now}
        self._failures = {
            a: ts for a, ts in self._failures.items() if ts and now - ts[-1] < self._lockout_seconds
        }


@dataclass
class _RecentUpload:
    size: int
    mtime: float
    expires: float


class _PartnerArea:
    """A partner's folders (real paths) and what is stored or being uploaded there."""

    def __init__(self, partner: SftpPartner, config: SftpServerConfig) -> None:
        self.partner = partner
        self.config = config
        root = Path(partner.root)
        (root / "in").mkdir(parents=True, exist_ok=True)
        (root / "out").mkdir(parents=True, exist_ok=True)
        self.root = Path(os.path.realpath(root))
        self.in_dir = Path(os.path.realpath(root / "in"))
        self.out_dir = Path(os.path.realpath(root / "out"))
        self.inflight: dict[int, int] = {}  # id(upload handle) -> bytes written so far
        self.recent: OrderedDict[str, _RecentUpload] = OrderedDict()
        self._stored: int | None = None
        self._stored_at = 0.0

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

    def is_temp_name(self, name: str) -> bool:
        return name.lower().endswith(tuple(s.lower() for s in self.config.upload_temp_suffixes)) or (
            name.startswith(self.config.upload_temp_prefixes)
        )

    def usage(self) -> int:
        """Bytes stored in in/ + out/ plus bytes of uploads in flight (scan cached a moment)."""
        now = time.monotonic()
        if self._stored is None or now - self._stored_at > USAGE_CACHE_SECONDS:
            self._stored = _tree_bytes(self.in_dir, skip_prefix=TEMP_UPLOAD_PREFIX) + _tree_bytes(
                self.out_dir, skip_prefix=None
            )
            self._stored_at = now
        return self._stored + sum(self.inflight.values())

    def stored_changed(self) -> None:
        self._stored = None

    def remember(self, name: str, size: int) -> None:
        """Clients often stat a file right after uploading it; the watcher may already have taken it."""
        now = time.monotonic()
        self.recent.pop(name, None)
        self.recent[name] = _RecentUpload(size, time.time(), now + RECENT_UPLOAD_SECONDS)
        while len(self.recent) > RECENT_UPLOADS_KEPT:
            self.recent.popitem(last=False)

    def recently_uploaded(self, name: str) -> _RecentUpload | None:
        entry = self.recent.get(name)
        if entry is None or entry.expires < time.monotonic():
            return None
        return entry


def _tree_bytes(top: Path, skip_prefix: str | None) -> int:
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


@dataclass
class _Upload:
    area: _PartnerArea
    name: str
    final_path: Path
    temp_path: Path
    fd: int
    started: float = field(default_factory=time.monotonic)
    size: int = 0
    received: int = 0
    finished: bool = False
    failure: str | None = None


@dataclass
class _Download:
    vpath: str
    fd: int
    size: int
    started: float = field(default_factory=time.monotonic)
    sent: int = 0


@dataclass(frozen=True)
class _Location:
    """A client path mapped into the jail. `area` is "" (the virtual root), "in" or "out"."""

    vpath: str
    area: str
    rest: tuple[str, ...]
    local: Path  # area folder joined with `rest`, symlinks not resolved
    real: Path  # fully resolved; inside the area folder


def _virtual_parts(path: bytes) -> tuple[str, ...]:
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise SFTPNoSuchFile("file names must be UTF-8") from None
    if "\x00" in text:
        raise SFTPNoSuchFile("invalid file name")
    normalised = posixpath.normpath(posixpath.join("/", text))
    return tuple(part for part in normalised.split("/") if part)


class _SftpSession(asyncssh.SFTPServer):
    """One partner's SFTP channel, confined to its in/ and out/ folders."""

    def __init__(self, chan: asyncssh.SSHServerChannel, owner: SftpServer, area: _PartnerArea) -> None:
        super().__init__(chan)
        self._owner = owner
        self._area = area
        self._partner_id = area.partner.partner_id
        self._uploads: dict[int, _Upload] = {}
        self._downloads: dict[int, _Download] = {}
        self._log = owner.log.bind(partner=self._partner_id)
        owner.session_opened()

    # ---- path mapping -------------------------------------------------------------------------

    def map_path(self, path: bytes) -> bytes:
        # Every operation is implemented below; asyncssh's defaults must never reach the filesystem.
        raise SFTPPermissionDenied("not allowed")

    def reverse_map_path(self, path: bytes) -> bytes:
        raise SFTPPermissionDenied("not allowed")

    def _hidden(self, area: str, name: str) -> bool:
        if name.startswith("."):
            return True
        return area == "out" and self._area.is_temp_name(name)

    def _locate(self, path: bytes) -> _Location:
        parts = _virtual_parts(path)
        vpath = "/" + "/".join(parts)
        if not parts:
            return _Location(vpath, "", (), self._area.root, self._area.root)
        area, rest = parts[0], parts[1:]
        if area == "in":
            base = self._area.in_dir
            if len(rest) > 1:
                raise SFTPNoSuchFile(f"{vpath}: no such file (in/ has no subfolders)")
        elif area == "out":
            base = self._area.out_dir
        else:
            raise SFTPNoSuchFile(f"{vpath}: no such file (only /in and /out exist)")
        if any(self._hidden(area, name) for name in rest):
            raise SFTPNoSuchFile(f"{vpath}: no such file")
        local = base.joinpath(*rest)
        real = Path(os.path.realpath(local))
        if real != base and base not in real.parents:
            self._log.warning("sftp.path_refused", path=vpath, reason="resolves outside the partner folder")
            raise SFTPPermissionDenied(f"{vpath}: permission denied")
        return _Location(vpath, area, rest, local, real)

    def _upload_location(self, path: bytes) -> _Location:
        loc = self._locate(path)
        if loc.area != "in" or len(loc.rest) != 1:
            raise SFTPPermissionDenied(f"{loc.vpath}: uploads go to /in/<file name>")
        name = loc.rest[0]
        if len(name.encode("utf-8")) > NAME_MAX_BYTES:
            raise SFTPFailure(f"{loc.vpath}: file name too long")
        return loc

    # ---- open / read / write / close ---------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        if pflags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC):
            return self._open_upload(path, pflags)
        return self._open_download(path)

    def _open_upload(self, path: bytes, pflags: int) -> _Upload:
        loc = self._upload_location(path)
        name = loc.rest[0]
        if pflags & FXF_READ:
            raise SFTPPermissionDenied(f"{loc.vpath}: files in /in cannot be read")
        if pflags & FXF_APPEND:
            self._refused(name, "append/resume not supported")
            raise SFTPPermissionDenied(f"{loc.vpath}: resume is not supported; upload the whole file again")
        temp_name = self._area.is_temp_name(name)
        if os.path.lexists(loc.local):
            if not temp_name:
                self._refused(name, "name exists, not taken yet")
                raise SFTPFailure(
                    f"{loc.vpath} exists and has not been taken yet; upload under another name or retry later"
                )
            if not pflags & FXF_TRUNC:
                self._refused(name, "resume of an existing file")
                raise SFTPPermissionDenied(
                    f"{loc.vpath}: resume is not supported; upload the whole file again"
                )
        elif not pflags & FXF_CREAT:
            raise SFTPNoSuchFile(f"{loc.vpath}: no such file")
        quota = self._area.partner.auth.quota_bytes
        if quota is not None and self._area.usage() >= quota:
            self._record_upload(name, 0, 0.0, "quota")
            raise SFTPFailure(f"quota of {quota} bytes reached")
        temp_path = self._area.in_dir / f"{TEMP_UPLOAD_PREFIX}{secrets.token_hex(8)}.upload"
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        upload = _Upload(self._area, name, loc.local, temp_path, fd)
        self._uploads[id(upload)] = upload
        self._area.inflight[id(upload)] = 0
        return upload

    def _open_download(self, path: bytes) -> _Download:
        loc = self._locate(path)
        if loc.area != "out" or not loc.rest:
            if loc.area == "in" and loc.rest:
                raise SFTPPermissionDenied(f"{loc.vpath}: files in /in cannot be read")
            raise SFTPPermissionDenied(f"{loc.vpath}: not a file you may read")
        fd = os.open(loc.real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SFTPPermissionDenied(f"{loc.vpath}: not a regular file")
        download = _Download(loc.vpath, fd, st.st_size)
        self._downloads[id(download)] = download
        return download

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if not isinstance(file_obj, _Download):
            raise SFTPPermissionDenied("handle not open for reading")
        data = os.pread(file_obj.fd, size, offset)
        file_obj.sent += len(data)
        return data

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, _Upload):
            raise SFTPPermissionDenied("handle not open for writing")
        upload = file_obj
        if upload.finished:
            raise SFTPFailure(upload.failure or "upload already finished")
        upload.received += len(data)
        if offset > upload.size:
            self._abort(upload, "refused", "write leaves a hole (resume is not supported)")
            raise SFTPPermissionDenied("writes must be sequential; resume is not supported")
        new_size = max(upload.size, offset + len(data))
        auth = self._area.partner.auth
        if auth.max_file_size is not None and new_size > auth.max_file_size:
            self._abort(upload, "too_large", f"file exceeds the maximum size of {auth.max_file_size} bytes")
            raise SFTPFailure(upload.failure or "too large")
        if auth.quota_bytes is not None and self._area.usage() + new_size - upload.size > auth.quota_bytes:
            self._abort(upload, "quota", f"quota of {auth.quota_bytes} bytes exceeded")
            raise SFTPFailure(upload.failure or "quota")
        view = memoryview(data)
        while view:
            written = os.pwrite(upload.fd, view, offset)
            view = view[written:]
            offset += written
        upload.size = new_size
        self._area.inflight[id(upload)] = new_size
        return len(data)

    def close(self, file_obj: object) -> Any:
        # Called for the client's FXP_CLOSE *and* for handles left open when a session ends: only a
        # close the client asked for publishes an upload (see _client_close_code).
        client_request = sys._getframe(1).f_code is self._owner.client_close_code
        return self._close(file_obj, client_request)

    async def _close(self, file_obj: object, client_request: bool) -> None:
        if isinstance(file_obj, _Download):
            self._finish_download(file_obj)
        elif isinstance(file_obj, _Upload):
            if file_obj.finished:
                if client_request and file_obj.failure:
                    raise SFTPFailure(file_obj.failure)
                return
            if not client_request:
                self._abort(file_obj, "aborted", "session ended before the file was closed")
                return
            await self._publish(file_obj)

    def _finish_download(self, download: _Download) -> None:
        self._downloads.pop(id(download), None)
        with contextlib.suppress(OSError):
            os.close(download.fd)
        duration = time.monotonic() - download.started
        if self._owner.metrics:
            self._owner.metrics.sftp_bytes_sent.labels(partner=self._partner_id).inc(download.sent)
        self._log.info(
            "sftp.download",
            file=download.vpath,
            bytes=download.sent,
            size=download.size,
            complete=download.sent >= download.size,
            duration_s=round(duration, 4),
        )

    async def _publish(self, upload: _Upload) -> None:
        upload.finished = True
        temp_name = self._area.is_temp_name(upload.name)
        fsync = self._area.config.fsync_uploads
        fd, upload.fd = upload.fd, -1  # _commit_file closes it whatever happens
        try:
            await asyncio.to_thread(_commit_file, fd, upload.temp_path, upload.final_path, temp_name, fsync)
        except FileExistsError:
            self._abort(upload, "refused", f"/in/{upload.name} appeared meanwhile and has not been taken yet")
            raise SFTPFailure(upload.failure or "exists") from None
        except OSError as exc:
            self._abort(upload, "refused", f"could not store the file: {exc.strerror or exc}")
            raise SFTPFailure(upload.failure or "failure") from None
        finally:
            self._uploads.pop(id(upload), None)
        self._area.inflight.pop(id(upload), None)
        self._area.stored_changed()
        duration = time.monotonic() - upload.started
        if temp_name:
            # Published under its temporary name; taken when the client renames it.
            self._count_bytes(upload.received)
            if self._owner.metrics:
                self._owner.metrics.sftp_transfer_duration.observe(duration)
            self._log.info(
                "sftp.upload_staged", file=upload.name, bytes=upload.size, duration_s=round(duration, 4)
            )
            return
        self._area.remember(upload.name, upload.size)
        self._count_bytes(upload.received)
        self._record_upload(upload.name, upload.size, duration, "ok")
        self._owner.notify_upload(self._partner_id, upload.final_path)

    def _abort(self, upload: _Upload, result: str, reason: str) -> None:
        """The upload is not taken: its temporary file goes away."""
        self._uploads.pop(id(upload), None)
        self._area.inflight.pop(id(upload), None)
        if upload.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(upload.fd)
            upload.fd = -1
        upload.finished = True
        upload.failure = reason
        with contextlib.suppress(FileNotFoundError):
            os.unlink(upload.temp_path)
        self._count_bytes(upload.received)
        self._record_upload(upload.name, upload.size, time.monotonic() - upload.started, result, reason)

    def _refused(self, name: str, reason: str) -> None:
        self._record_upload(name, 0, 0.0, "refused", reason)

    def _count_bytes(self, count: int) -> None:
        if self._owner.metrics and count:
            self._owner.metrics.sftp_bytes_received.labels(partner=self._partner_id).inc(count)

    def _record_upload(
        self, name: str, size: int, duration: float, result: str, reason: str | None = None
    ) -> None:
        metrics = self._owner.metrics
        if metrics:
            metrics.sftp_uploads.labels(partner=self._partner_id, result=result).inc()
            if result == "ok":
                metrics.sftp_transfer_duration.observe(duration)
        fields: dict[str, Any] = {
            "file": name,
            "bytes": size,
            "duration_s": round(duration, 4),
            "result": result,
        }
        if reason:
            fields["reason"] = reason
        if result == "ok":
            self._log.info("sftp.upload", **fields)
        else:
            self._log.warning("sftp.upload", **fields)

    # ---- attributes --------------------------------------------------------------------------

    def stat(self, path: bytes) -> os.stat_result | SFTPAttrs:
        loc = self._locate(path)
        if loc.area == "in" and loc.rest:
            try:
                st = os.stat(loc.real)
            except FileNotFoundError:
                recent = self._area.recently_uploaded(loc.rest[0])
                if recent is None:
                    raise SFTPNoSuchFile(f"{loc.vpath}: no such file") from None
                return SFTPAttrs(
                    size=recent.size, permissions=stat.S_IFREG | 0o640, atime=recent.mtime, mtime=recent.mtime
                )
            if not stat.S_ISREG(st.st_mode):
                raise SFTPNoSuchFile(f"{loc.vpath}: no such file")
            return st
        return os.stat(loc.real)

    def lstat(self, path: bytes) -> os.stat_result | SFTPAttrs:
        # Symlinks are never shown as such: what a partner sees is what it may read.
        return self.stat(path)

    def fstat(self, file_obj: object) -> os.stat_result:
        if isinstance(file_obj, _Upload):
            if file_obj.finished:
                raise SFTPFailure(file_obj.failure or "upload finished")
            return os.fstat(file_obj.fd)
        if isinstance(file_obj, _Download):
            return os.fstat(file_obj.fd)
        raise SFTPFailure("invalid handle")

    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        # Times and permissions are accepted and ignored (clients "preserve timestamps");
        # a size change would truncate or extend a file: refused.
        self.stat(path)
        if attrs.size is not None:
            raise SFTPPermissionDenied("changing a file's size is not allowed")

    def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self.setstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        if attrs.size is not None and not (isinstance(file_obj, _Upload) and attrs.size == file_obj.size):
            raise SFTPPermissionDenied("changing a file's size is not allowed")

    def fsync(self, file_obj: object) -> None:
        if isinstance(file_obj, _Upload) and not file_obj.finished:
            os.fsync(file_obj.fd)

    # ---- directories -------------------------------------------------------------------------

    def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:  # type: ignore[override]
        loc = self._locate(path)  # raised here, the client gets the error on opendir
        names = list(self._list(loc))

        async def entries() -> AsyncIterator[SFTPName]:
            for name in names:
                yield name

        return entries()

    def _list(self, loc: _Location) -> Iterator[SFTPName]:
        here = os.stat(loc.real)
        if not stat.S_ISDIR(here.st_mode):
            raise SFTPNoSuchFile(f"{loc.vpath}: not a folder")
        yield SFTPName(b".", attrs=SFTPAttrs.from_local(here))
        yield SFTPName(b"..", attrs=SFTPAttrs.from_local(here))
        if loc.area == "":
            for area, folder in (("in", self._area.in_dir), ("out", self._area.out_dir)):
                yield SFTPName(area.encode(), attrs=SFTPAttrs.from_local(os.stat(folder)))
            return
        base = self._area.in_dir if loc.area == "in" else self._area.out_dir
        with os.scandir(loc.real) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if self._hidden(loc.area, entry.name):
                continue
            try:
                if loc.area == "in":
                    st = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                else:
                    real = Path(os.path.realpath(entry.path))
                    if real != base and base not in real.parents:
                        continue
                    st = os.stat(real)
            except OSError:
                continue
            yield SFTPName(os.fsencode(entry.name), attrs=SFTPAttrs.from_local(st))

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        raise SFTPPermissionDenied("creating folders is not allowed")

    def rmdir(self, path: bytes) -> None:
        raise SFTPPermissionDenied("removing folders is not allowed")

    def realpath(self, path: bytes) -> bytes:
        return ("/" + "/".join(_virtual_parts(path))).encode("utf-8")

    def format_user(self, uid: int | None) -> str:
        return self._partner_id

    def format_group(self, gid: int | None) -> str:
        return self._partner_id

    # ---- remove / rename / links -------------------------------------------------------------

    def remove(self, path: bytes) -> None:
        loc = self._locate(path)
        if loc.area == "out" and loc.rest:
            # The entry the client named (a link itself, not its target); its folder is in the jail.
            entry = Path(os.path.realpath(loc.local.parent)) / loc.local.name
            if stat.S_ISDIR(os.lstat(entry).st_mode):
                raise SFTPPermissionDenied(f"{loc.vpath}: removing folders is not allowed")
            os.unlink(entry)
        elif loc.area == "in" and loc.rest and self._area.is_temp_name(loc.rest[0]):
            st = os.lstat(loc.local)
            if not stat.S_ISREG(st.st_mode):
                raise SFTPPermissionDenied(f"{loc.vpath}: permission denied")
            os.unlink(loc.local)
        else:
            raise SFTPPermissionDenied(f"{loc.vpath}: permission denied")
        self._area.stored_changed()
        self._log.info("sftp.delete", file=loc.vpath)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old = self._locate(oldpath)
        if old.area != "in" or len(old.rest) != 1:
            raise SFTPPermissionDenied(f"{old.vpath}: only uploads in /in can be renamed")
        new = self._upload_location(newpath)
        old_name, new_name = old.rest[0], new.rest[0]
        if not self._area.is_temp_name(old_name):
            raise SFTPPermissionDenied(
                f"{old.vpath}: only a temporary upload name ({', '.join(self._area.config.upload_temp_suffixes)}) "
                "can be renamed"
            )
        st = os.lstat(old.local)
        if not stat.S_ISREG(st.st_mode):
            raise SFTPPermissionDenied(f"{old.vpath}: permission denied")
        if old_name == new_name:
            return
        if self._area.is_temp_name(new_name):
            os.replace(old.local, new.local)
            return
        try:
            os.link(old.local, new.local)
        except FileExistsError:
            self._refused(new_name, "name exists, not taken yet")
            raise SFTPFailure(
                f"{new.vpath} exists and has not been taken yet; rename to another name or retry later"
            ) from None
        os.unlink(old.local)
        if self._area.config.fsync_uploads:
            _fsync_dir(self._area.in_dir)
        self._area.remember(new_name, st.st_size)
        self._record_upload(new_name, st.st_size, 0.0, "ok", None)
        self._owner.notify_upload(self._partner_id, new.local)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self.rename(oldpath, newpath)

    def readlink(self, path: bytes) -> bytes:
        raise SFTPPermissionDenied("links are not available")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise SFTPPermissionDenied("creating links is not allowed")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise SFTPPermissionDenied("creating links is not allowed")

    def statvfs(self, path: bytes) -> Any:
        raise SFTPOpUnsupported("statvfs not supported")

    def fstatvfs(self, file_obj: object) -> Any:
        raise SFTPOpUnsupported("fstatvfs not supported")

    def exit(self) -> None:
        for upload in list(self._uploads.values()):
            self._abort(upload, "aborted", "session ended before the file was closed")
        for download in list(self._downloads.values()):
            self._finish_download(download)
        self._owner.session_closed()


def _commit_file(fd: int, temp_path: Path, final_path: Path, replace: bool, fsync: bool) -> None:
    """Make a finished upload visible under its name, atomically; never replaces a non-temp file."""
    try:
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(temp_path, final_path)
    else:
        os.link(temp_path, final_path)  # FileExistsError when the name is taken
        os.unlink(temp_path)
    if fsync:
        _fsync_dir(final_path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _ConnectionGuard(asyncssh.SSHServer):
    """Authentication and per-connection policy: who may log in, from where, how often."""

    def __init__(self, owner: SftpServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None
        self._address = ""
        self._username = ""
        self._denied: str | None = None  # locked_out / source_denied / too_many_sessions: all refused
        self._key_failure_counted = False  # a client offering several keys counts once per connection
        self._authenticated = False
        self._holds_session = False  # counted in the partner's max_sessions
        self._counted_unauthenticated = False  # counted in its address's max_unauthenticated_per_address

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("", 0)
        self._address = _canonical_address(str(peer[0]))
        if not self._owner.connection_opened(conn, self._address):
            conn.abort()  # before asyncssh sends its version string: no handshake work at all
            return
        self._conn = conn
        self._counted_unauthenticated = True
        self._owner.log.info("sftp.connect", address=self._address, port=peer[1])

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is None:  # refused in connection_made, already counted and logged
            return
        self._owner.connection_closed(self._conn)
        self._stop_counting_unauthenticated()
        if self._holds_session:
            self._holds_session = False
            self._owner.release_session(self._username)
        self._owner.log.info(
            "sftp.disconnect",
            address=self._address,
            partner=self._username if self._authenticated else None,
            error=str(exc) if exc else None,
        )

    def _stop_counting_unauthenticated(self) -> None:
        if self._counted_unauthenticated:
            self._counted_unauthenticated = False
            self._owner.unauthenticated_closed(self._address)

    def begin_auth(self, username: str) -> bool:
        self._username = username
        partner = self._owner.partner(username)
        if self._owner.limiter.locked(self._address):
            self._deny("locked_out")
        elif partner is not None and not _source_allowed(partner.auth, self._address):
            self._deny("source_denied")
        return True

    def _deny(self, result: str) -> None:
        if self._denied is None:
            self._denied = result
            if self._owner.metrics:
                self._owner.metrics.sftp_logins.labels(result=result).inc()
            self._owner.log.warning(
                "sftp.login_refused", user=self._username, address=self._address, result=result
            )

    def _partner_full(self, username: str) -> bool:
        """Refuse (once counted) right credentials when the partner already has max_sessions open."""
        if self._owner.session_available(username):
            return False
        self._deny("too_many_sessions")
        return True

    def _refusing(self) -> bool:
        if self._denied is None and self._owner.limiter.locked(self._address):
            self._deny("locked_out")
        return self._denied is not None

    def _failed(self, result: str) -> None:
        metrics = self._owner.metrics
        if metrics:
            metrics.sftp_logins.labels(result=result).inc()
        self._owner.log.warning(
            "sftp.login_failed", user=self._username, address=self._address, result=result
        )
        if self._owner.limiter.failure(self._address):
            self._owner.log.warning(
                "sftp.lockout",
                address=self._address,
                seconds=self._owner.config.lockout_seconds,
                failures=self._owner.config.max_login_failures,
            )

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._refusing():
            return False
        partner = self._owner.partner(username)
        keys = self._owner.authorized_keys(username) if partner else None
        if keys is not None and keys.validate(key, self._address, self._address) is not None:
            return not self._partner_full(username)
        if not self._key_failure_counted:
            self._key_failure_counted = True
            self._failed("unknown_user" if partner is None else "bad_key")
        return False

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        if self._refusing():
            return False
        partner = self._owner.partner(username)
        stored = partner.auth.password_hash if partner else None
        ok = await asyncio.to_thread(_verify_password, stored or self._owner.dummy_hash(), password)
        if ok and stored is not None:
            return not self._partner_full(username)
        self._failed("unknown_user" if partner is None else "bad_password")
        return False

    def auth_completed(self) -> None:
        # Validation and this call run without yielding to the loop, so the check in _partner_full
        # still holds; claiming here keeps the count exact whatever asyncssh does in between.
        if not self._owner.claim_session(self._username):
            self._deny("too_many_sessions")
            if self._conn is not None:
                self._conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, "too many sessions")
            return
        self._holds_session = True
        self._authenticated = True
        self._stop_counting_unauthenticated()
        self._owner.limiter.success(self._address)
        if self._owner.metrics:
            self._owner.metrics.sftp_logins.labels(result="ok").inc()
        self._owner.log.info("sftp.login", partner=self._username, address=self._address, result="ok")

    # Everything but the sftp subsystem is refused (asyncssh refuses shell/exec without a factory).
    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False


def _verify_password(stored: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _canonical_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _source_allowed(auth: SftpPartnerAuth, address: str) -> bool:
    if not auth.allowed_sources:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in auth.source_networks())


class SftpServer:
    """The gateway's SFTP server: listens, authenticates partners, publishes their uploads."""

    def __init__(
        self,
        config: SftpServerConfig,
        partners: Mapping[str, SftpPartner],
        host_key_path: Path,
        on_upload: Callable[[str, Path], None],
        metrics: Metrics | None = None,
        logger: Any | None = None,
    ) -> None:
        self.config = config
        self._partners = dict(partners)
        self._host_key_path = Path(host_key_path)
        self._on_upload = on_upload
        self.metrics = metrics
        self.log = logger if logger is not None else structlog.get_logger("gateway.sftp")
        self.limiter = _LoginLimiter(config.max_login_failures, config.lockout_seconds, time.monotonic)
        self.client_close_code = _client_close_code()
        self._authorized_keys: dict[str, asyncssh.SSHAuthorizedKeys | None] = {}
        for partner_id, partner in self._partners.items():
            lines = [line for line in partner.auth.authorized_keys if line.strip()]
            self._authorized_keys[partner_id] = (
                asyncssh.import_authorized_keys("\n".join(lines) + "\n") if lines else None
            )
        self._areas: dict[str, _PartnerArea] = {}
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._partner_sessions: dict[str, int] = {}  # authenticated connections per partner
        self._unauthenticated: dict[str, int] = {}  # connections not authenticated yet, per address
        self._refusals = _RefusalLog(self.log, time.monotonic)
        self._dummy_hash: str | None = None

    # ---- used by connections and sessions ------------------------------------------------------

    def partner(self, username: str) -> SftpPartner | None:
        return self._partners.get(username)

    def authorized_keys(self, username: str) -> asyncssh.SSHAuthorizedKeys | None:
        return self._authorized_keys.get(username)

    def dummy_hash(self) -> str:
        """Verified against for unknown users, so timing does not tell which accounts exist."""
        if self._dummy_hash is None:
            self._dummy_hash = hash_password(secrets.token_urlsafe(16))
        return self._dummy_hash

    def connection_opened(self, conn: asyncssh.SSHServerConnection, address: str) -> bool:
        """Count a new, not yet authenticated connection from `address`.

        False (counted, logged) when `address` already holds `max_unauthenticated_per_address`
        unauthenticated connections, or `max_connections` are open in all.
        """
        per_address = self.config.max_unauthenticated_per_address
        if self.unauthenticated_count(address) >= per_address:
            self._refuse("too_many_unauthenticated", address, max_unauthenticated_per_address=per_address)
            return False
        if len(self._connections) >= self.config.max_connections:
            self._refuse("too_many_connections", address, max_connections=self.config.max_connections)
            return False
        self._connections.add(conn)
        self._unauthenticated[address] = self.unauthenticated_count(address) + 1
        return True

    def _refuse(self, result: str, address: str, **limit: int) -> None:
        if self.metrics:
            self.metrics.sftp_logins.labels(result=result).inc()
        self._refusals.refused(result, address, **limit)

    def unauthenticated_closed(self, address: str) -> None:
        """A connection counted by `connection_opened` authenticated or ended."""
        remaining = self.unauthenticated_count(address) - 1
        if remaining > 0:
            self._unauthenticated[address] = remaining
        else:
            self._unauthenticated.pop(address, None)

    def unauthenticated_count(self, address: str) -> int:
        """Connections from `address` open now and not authenticated yet."""
        return self._unauthenticated.get(address, 0)

    def connection_closed(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(conn)

    @property
    def connection_count(self) -> int:
        """SSH connections open now, authenticated or not."""
        return len(self._connections)

    def partner_session_count(self, partner_id: str) -> int:
        """Authenticated connections the partner has open now."""
        return self._partner_sessions.get(partner_id, 0)

    def session_available(self, partner_id: str) -> bool:
        partner = self._partners.get(partner_id)
        return partner is not None and self.partner_session_count(partner_id) < partner.auth.max_sessions

    def claim_session(self, partner_id: str) -> bool:
        if not self.session_available(partner_id):
            return False
        self._partner_sessions[partner_id] = self.partner_session_count(partner_id) + 1
        return True

    def release_session(self, partner_id: str) -> None:
        remaining = self.partner_session_count(partner_id) - 1
        if remaining > 0:
            self._partner_sessions[partner_id] = remaining
        else:
            self._partner_sessions.pop(partner_id, None)

    def session_opened(self) -> None:
        if self.metrics:
            self.metrics.sftp_sessions.inc()

    def session_closed(self) -> None:
        if self.metrics:
            self.metrics.sftp_sessions.dec()

    def notify_upload(self, partner_id: str, path: Path) -> None:
        try:
            self._on_upload(partner_id, path)
        except Exception:  # the file is published; the watcher's periodic scan will still take it
            self.log.exception("sftp.on_upload_failed", partner=partner_id, file=path.name)

    def _make_session(self, chan: asyncssh.SSHServerChannel) -> _SftpSession:
        username = chan.get_extra_info("username")
        area = self._areas.get(username)
        if area is None:  # cannot happen: only configured partners authenticate
            raise asyncssh.DisconnectError(asyncssh.DISC_BY_APPLICATION, "unknown partner")
        self.log.info("sftp.session", partner=username)
        return _SftpSession(chan, self, area)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        key, created = await asyncio.to_thread(_load_or_create_host_key, self._host_key_path)
        if created:
            self.log.info("sftp.host_key_generated", path=str(self._host_key_path))
        mode = self._host_key_path.stat().st_mode
        if mode & 0o077:
            self.log.warning(
                "sftp.host_key_permissions", path=str(self._host_key_path), mode=oct(mode & 0o777)
            )
        for partner_id, partner in self._partners.items():
            area = _PartnerArea(partner, self.config)
            stale = area.remove_stale_temps()
            if stale:
                self.log.info("sftp.stale_uploads_removed", partner=partner_id, count=stale)
            self._areas[partner_id] = area
        self._acceptor = await asyncssh.listen(
            self.config.host,
            self.config.port,
            server_factory=lambda: _ConnectionGuard(self),
            server_host_keys=[key],
            sftp_factory=self._make_session,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            login_timeout=self.config.login_timeout_seconds,
            keepalive_interval=self.config.keepalive_seconds,
            keepalive_count_max=3,
        )
        self.log.info(
            "sftp.listening",
            host=self.config.host,
            port=self.port,
            host_key_fingerprint=key.get_fingerprint(),
            partners=len(self._partners),
        )

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), timeout=5)
        if self._acceptor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._acceptor.wait_closed(), timeout=5)
            self._acceptor = None
        self.log.info("sftp.stopped")

    @property
    def port(self) -> int:
        if self._acceptor is None:
            raise RuntimeError("SFTP server not started")
        return self._acceptor.get_port()
