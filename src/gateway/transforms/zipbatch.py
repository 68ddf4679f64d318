"""ZIP batches: list and read entries defensively (traversal, nesting, counts, sizes, bombs)."""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from gateway.errors import IdentifyError

ARCHIVE_SUFFIXES = (
    ".zip",
    ".jar",
    ".tar",
    ".tgz",
    ".gz",
    ".bz2",
    ".xz",
    ".7z",
    ".rar",
    ".zst",
    ".lz",
    ".cab",
)
ARCHIVE_MAGICS = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!",
    b"BZh",
    b"\xfd7zXZ",
)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_uncompressed_bytes: int
    max_ratio: int
    ratio_min_bytes: int  # entries smaller than this cannot be bombs; the ratio is not checked


@dataclass(frozen=True)
class ZipEntry:
    name: str
    data: bytes = b""
    error: str | None = None  # this entry alone is unreadable (encrypted, bad CRC…)


def _check_name(name: str) -> None:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise IdentifyError(f"ZIP entry {name} has an absolute name")
    if ".." in PurePosixPath(normalised).parts or "\x00" in name:
        raise IdentifyError(f"ZIP entry {name} escapes the archive")


def _is_archive(name: str, head: bytes) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES) or head.startswith(ARCHIVE_MAGICS)


def _read_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """Read one entry, never more than its declared size nor the remaining budget."""
    limit = min(info.file_size, budget)
    out = bytearray()
    with zf.open(info) as fh:
        while True:
            chunk = fh.read(min(_CHUNK, limit + 1 - len(out)))
            if not chunk:
                break
            out += chunk
            if len(out) > limit:
                if len(out) > info.file_size:
                    raise IdentifyError(f"ZIP entry {info.filename} is larger than it declares")
                raise IdentifyError("ZIP holds more uncompressed bytes than allowed")
    return bytes(out)


def read_zip(data: bytes, limits: ZipLimits) -> list[ZipEntry]:
    """Entries of a ZIP batch (directories skipped), or IdentifyError for the whole flow."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
        raise IdentifyError(f"ZIP cannot be read: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise IdentifyError(f"ZIP has more than {limits.max_entries} entries")
        files: list[zipfile.ZipInfo] = []
        seen: set[str] = set()
        declared_total = 0
        for info in infos:
            _check_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise IdentifyError(f"ZIP entry {info.filename} is a symbolic link")
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            if info.filename in seen:
                raise IdentifyError(f"ZIP holds entry {info.filename} twice")
            seen.add(info.filename)
            if _is_archive(info.filename, b""):
                raise IdentifyError(f"ZIP holds a nested archive {info.filename}")
            declared_total += info.file_size
            if declared_total > limits.max_uncompressed_bytes:
                raise IdentifyError(
                    f"ZIP declares more than {limits.max_uncompressed_bytes} uncompressed bytes"
                )
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size >= limits.ratio_min_bytes and ratio > limits.max_ratio:
                raise IdentifyError(
                    f"ZIP entry {info.filename} is a compression bomb (ratio {ratio:.0f}:1, limit {limits.max_ratio}:1)"
                )
            files.append(info)
        if not files:
            raise IdentifyError("ZIP holds no files")
        entries: list[ZipEntry] = []
        budget = limits.max_uncompressed_bytes
        for info in files:
            if info.flag_bits & 0x1:
                entries.append(ZipEntry(info.filename, error=f"ZIP entry {info.filename} is encrypted"))
                continue
            try:
                content = _read_bounded(zf, info, budget)
            except IdentifyError:
                raise
            except (
                zipfile.BadZipFile,
                zlib.error,
                NotImplementedError,
                ValueError,
                OSError,
                EOFError,
                RuntimeError,
            ) as exc:
                entries.append(
                    ZipEntry(info.filename, error=f"ZIP entry {info.filename} cannot be read: {exc}")
                )
                continue
            budget -= len(content)
            if _is_archive(info.filename, content[:8]):
                raise IdentifyError(f"ZIP holds a nested archive {info.filename}")
            entries.append(ZipEntry(info.filename, content))
        return entries
