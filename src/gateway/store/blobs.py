"""Content-addressed blob store: spool/blobs/ab/cd/<sha256>, written in tmp/ and published by rename."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.fsutil import fsync_dir

CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobStore:
    root: Path  # spool/blobs
    tmp: Path  # spool/tmp (same filesystem as root)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy `source` in while hashing; fsync; publish by rename. Returns (sha256, size)."""
        digest = hashlib.sha256()
        size = 0
        tmp = self.tmp / f"{secrets.token_hex(8)}.blob"
        try:
            with source.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            sha = digest.hexdigest()
            final = self.path_for(sha)
            if final.exists():
                os.utime(final)  # taken in again: `gateway purge` keeps what was just received
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                fsync_dir(final.parent)
            return sha, size
        finally:
            tmp.unlink(missing_ok=True)

    def link_in(self, source: Path, sha256: str) -> None:
        """Make fsynced `source` (same file system, content hashed by its writer) the blob `sha256`.

        No copy: a hard link under the content address (`source` stays where it is), then every
        directory the link touched or created is fsynced. Nothing to do if the blob is already stored.
        """
        final = self.path_for(sha256)
        if final.exists():
            return
        created: list[Path] = []
        for directory in (final.parent.parent, final.parent):
            try:
                directory.mkdir()
                created.append(directory)
            except FileExistsError:
                pass
        try:
            os.link(source, final)
        except FileExistsError:
            return  # stored meanwhile (a twin recorded by another thread)
        fsync_dir(final.parent)
        for directory in reversed(created):
            fsync_dir(directory.parent)  # the new directory's own entry

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
