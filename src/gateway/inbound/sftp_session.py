"""One partner's SFTP session: the file operations, confined to its `/in` and `/out` (see sftp_server).

An upload is written to a hidden temporary file in `in/` (`.sftp-<random>.upload`) and published under
its real name by an atomic, non-replacing link the moment the client *closes* the handle. Anything
that goes wrong before that — a failed write (ENOSPC, EIO), a size or quota limit, a lost connection —
poisons the handle: the temporary file is deleted, the client's close gets a failure status, and
nothing is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
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

from gateway.inbound.sftp_jail import TEMP_UPLOAD_PREFIX, Location, PartnerArea, inside, virtual_parts

if TYPE_CHECKING:
    from gateway.inbound.sftp_server import SftpServer

NAME_MAX_BYTES = 255

WriteAt = Callable[[int, memoryview, int], int]  # os.pwrite's shape: (fd, data, offset) -> bytes written


@dataclass
class Upload:
    name: str
    final_path: Path
    temp_path: Path
    fd: int
    started: float
    size: int = 0
    received: int = 0
    finished: bool = False
    failure: str | None = None


@dataclass
class Download:
    vpath: str
    fd: int
    size: int
    started: float
    sent: int = 0


class SftpSession(asyncssh.SFTPServer):
    """One partner's SFTP channel, confined to its in/ and out/ folders."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], owner: SftpServer, area: PartnerArea) -> None:
        super().__init__(chan)
        self._owner = owner
        self._area = area
        self._clock = owner.clock
        self._partner_id = area.partner.partner_id
        self._uploads: dict[int, Upload] = {}
        self._downloads: dict[int, Download] = {}
        self._log = owner.log.bind(partner=self._partner_id)
        if owner.close_detector is None:
            raise RuntimeError("SFTP session before the server started")
        self._close_detector = owner.close_detector
        owner.session_opened()

    # ---- path mapping -------------------------------------------------------------------------

    def map_path(self, path: bytes) -> bytes:
        # Every operation is implemented below; asyncssh's defaults must never reach the filesystem.
        raise SFTPPermissionDenied("not allowed")

    def reverse_map_path(self, path: bytes) -> bytes:
        raise SFTPPermissionDenied("not allowed")

    def _locate(self, path: bytes) -> Location:
        return self._area.locate(path, self._escape_refused)

    def _escape_refused(self, vpath: str) -> None:
        self._log.warning("sftp.path_refused", path=vpath, reason="resolves outside the partner folder")

    def _upload_location(self, path: bytes) -> Location:
        loc = self._locate(path)
        if loc.area != "in" or len(loc.rest) != 1:
            raise SFTPPermissionDenied(f"{loc.vpath}: uploads go to /in/<file name>")
        if len(loc.rest[0].encode("utf-8")) > NAME_MAX_BYTES:
            raise SFTPFailure(f"{loc.vpath}: file name too long")
        return loc

    # ---- handles ----------------------------------------------------------------------------------

    @property
    def open_handles(self) -> int:
        return len(self._uploads) + len(self._downloads)

    def _check_handle_room(self) -> None:
        """At most max_open_handles_per_session / _per_partner file handles (issue 16, item 9)."""
        config = self._area.config
        if self.open_handles >= config.max_open_handles_per_session:
            self._log.warning("sftp.handles_refused", limit="session", open=self.open_handles)
            raise SFTPFailure(
                f"too many open files in this session (at most {config.max_open_handles_per_session})"
            )
        if self._area.open_handles >= config.max_open_handles_per_partner:
            self._log.warning("sftp.handles_refused", limit="partner", open=self._area.open_handles)
            raise SFTPFailure(
                f"too many open files for this partner (at most {config.max_open_handles_per_partner})"
            )

    def _track(self, handle: Upload | Download) -> None:
        if isinstance(handle, Upload):
            self._uploads[id(handle)] = handle
            self._area.inflight[id(handle)] = 0
        else:
            self._downloads[id(handle)] = handle
        self._area.open_handles += 1

    def _forget(self, handle: Upload | Download) -> None:
        table: dict[int, Any] = self._uploads if isinstance(handle, Upload) else self._downloads
        if table.pop(id(handle), None) is not None:
            self._area.open_handles -= 1
        self._area.inflight.pop(id(handle), None)

    # ---- open / read / write / close ---------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        if pflags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC):
            return self._open_upload(path, pflags)
        return self._open_download(path)

    def _open_upload(self, path: bytes, pflags: int) -> Upload:
        loc = self._upload_location(path)
        name = loc.rest[0]
        if pflags & FXF_READ:
            raise SFTPPermissionDenied(f"{loc.vpath}: files in /in cannot be read")
        if pflags & FXF_APPEND:
            self._refused(name, "append/resume not supported")
            raise SFTPPermissionDenied(f"{loc.vpath}: resume is not supported; upload the whole file again")
        if os.path.lexists(loc.local):
            if not self._area.is_temp_name(name):
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
        self._check_handle_room()
        temp_path = self._area.in_dir / f"{TEMP_UPLOAD_PREFIX}{secrets.token_hex(8)}.upload"
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        upload = Upload(name, loc.local, temp_path, fd, self._clock.monotonic())
        self._track(upload)
        return upload

    def _open_download(self, path: bytes) -> Download:
        loc = self._locate(path)
        if loc.area != "out" or not loc.rest:
            if loc.area == "in" and loc.rest:
                raise SFTPPermissionDenied(f"{loc.vpath}: files in /in cannot be read")
            raise SFTPPermissionDenied(f"{loc.vpath}: not a file you may read")
        self._check_handle_room()
        fd = os.open(loc.real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SFTPPermissionDenied(f"{loc.vpath}: not a regular file")
        download = Download(loc.vpath, fd, st.st_size, self._clock.monotonic())
        self._track(download)
        return download

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if not isinstance(file_obj, Download):
            raise SFTPPermissionDenied("handle not open for reading")
        data = os.pread(file_obj.fd, size, offset)
        file_obj.sent += len(data)
        return data

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, Upload):
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
        try:
            while view:
                written = self._owner.write_at(upload.fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            # The file is now incomplete: it must never be published (issue 16, item 4).
            self._abort(upload, "write_failed", f"could not store the file: {exc.strerror or exc}")
            raise SFTPFailure(upload.failure or "write failed") from None
        upload.size = new_size
        self._area.inflight[id(upload)] = new_size
        return len(data)

    def close(self, file_obj: object) -> Any:
        # Called for the client's FXP_CLOSE *and* for handles left open when a session ends: only a
        # close the client asked for publishes an upload (see sftp_close).
        return self._close(file_obj, self._close_detector.is_client_close())

    async def _close(self, file_obj: object, client_request: bool) -> None:
        if isinstance(file_obj, Download):
            self._finish_download(file_obj)
        elif isinstance(file_obj, Upload):
            if file_obj.finished:
                if client_request and file_obj.failure:
                    raise SFTPFailure(file_obj.failure)
                return
            if not client_request:
                self._abort(file_obj, "aborted", "session ended before the file was closed")
                return
            await self._publish(file_obj)

    def _finish_download(self, download: Download) -> None:
        self._forget(download)
        with contextlib.suppress(OSError):
            os.close(download.fd)
        duration = self._clock.monotonic() - download.started
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

    async def _publish(self, upload: Upload) -> None:
        upload.finished = True
        temp_name = self._area.is_temp_name(upload.name)
        fsync = self._area.config.fsync_uploads
        fd, upload.fd = upload.fd, -1  # commit_file closes it whatever happens
        try:
            await asyncio.to_thread(commit_file, fd, upload.temp_path, upload.final_path, temp_name, fsync)
        except FileExistsError:
            self._abort(upload, "refused", f"/in/{upload.name} appeared meanwhile and has not been taken yet")
            raise SFTPFailure(upload.failure or "exists") from None
        except OSError as exc:
            self._abort(upload, "write_failed", f"could not store the file: {exc.strerror or exc}")
            raise SFTPFailure(upload.failure or "failure") from None
        finally:
            self._forget(upload)
        self._area.stored_changed()
        duration = self._clock.monotonic() - upload.started
        self._count_bytes(upload.received)
        if temp_name:
            # Published under its temporary name; taken when the client renames it.
            if self._owner.metrics:
                self._owner.metrics.sftp_transfer_duration.observe(duration)
            self._log.info(
                "sftp.upload_staged", file=upload.name, bytes=upload.size, duration_s=round(duration, 4)
            )
            return
        self._area.remember(upload.name, upload.size)
        self._record_upload(upload.name, upload.size, duration, "ok")
        self._owner.notify_upload(self._partner_id, upload.final_path)

    def _abort(self, upload: Upload, result: str, reason: str) -> None:
        """The upload is not taken: its temporary file goes away, the handle answers `reason`."""
        self._forget(upload)
        if upload.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(upload.fd)
            upload.fd = -1
        upload.finished = True
        upload.failure = reason
        with contextlib.suppress(FileNotFoundError):
            os.unlink(upload.temp_path)
        self._count_bytes(upload.received)
        duration = self._clock.monotonic() - upload.started
        self._record_upload(upload.name, upload.size, duration, result, reason)

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
        if isinstance(file_obj, Upload):
            if file_obj.finished:
                raise SFTPFailure(file_obj.failure or "upload finished")
            return os.fstat(file_obj.fd)
        if isinstance(file_obj, Download):
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
        if attrs.size is not None and not (isinstance(file_obj, Upload) and attrs.size == file_obj.size):
            raise SFTPPermissionDenied("changing a file's size is not allowed")

    def fsync(self, file_obj: object) -> None:
        if isinstance(file_obj, Upload) and not file_obj.finished:
            os.fsync(file_obj.fd)

    # ---- directories -------------------------------------------------------------------------

    def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        loc = self._locate(path)  # raised here, the client gets the error on opendir
        names = list(self._list(loc))

        async def entries() -> AsyncIterator[SFTPName]:
            for name in names:
                yield name

        return entries()

    def _list(self, loc: Location) -> Iterator[SFTPName]:
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
            if self._area.hidden(loc.area, entry.name):
                continue
            try:
                if loc.area == "in":
                    st = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                else:
                    real = Path(os.path.realpath(entry.path))
                    if not inside(real, base):
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
        return ("/" + "/".join(virtual_parts(path))).encode("utf-8")

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
            fsync_dir(self._area.in_dir)
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


def commit_file(fd: int, temp_path: Path, final_path: Path, replace: bool, fsync: bool) -> None:
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
        fsync_dir(final_path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
