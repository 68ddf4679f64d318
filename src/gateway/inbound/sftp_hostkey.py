"""The SFTP server's host key: generated once (mode 0600), refused if others can read it, fingerprinted."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import asyncssh


class HostKeyError(Exception):
    """The host key cannot be used; the message is one line for the operator."""


def load_or_create_host_key(path: Path) -> tuple[asyncssh.SSHKey, bool]:
    """Read the host key, or generate an ed25519 key there (mode 0600) on first start.

    A key file that its group or others may read (or write) is refused: whoever read it could
    impersonate the server to every partner (issue 16, item 13).
    """
    if path.exists():
        check_permissions(path)
        try:
            return asyncssh.read_private_key(path), False
        except (OSError, ValueError, asyncssh.KeyImportError) as exc:
            raise HostKeyError(f"SFTP host key {path} cannot be read: {exc}") from None
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
    check_permissions(path)
    return asyncssh.read_private_key(path), True


def check_permissions(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise HostKeyError(
            f"SFTP host key {path} is accessible by group/others (mode {mode:04o}); run: chmod 600 {path}"
        )


def fingerprint(path: Path) -> str:
    """The key's SHA256 fingerprint as OpenSSH shows it (`SHA256:…`, base64 without padding)."""
    try:
        key = asyncssh.read_private_key(path)
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        raise HostKeyError(f"SFTP host key {path} cannot be read: {exc}") from None
    return str(key.get_fingerprint("sha256"))
