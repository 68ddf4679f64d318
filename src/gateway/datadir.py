"""The data directory: where config, database, spool and partner folders live.

<data dir>/gateway.toml          configuration (written, commented, on first start)
<data dir>/gateway.db            SQLite store (WAL) unless store.url says otherwise
<data dir>/spool/claim/<partner>/<flow id>/<file>   files taken from in/, until their flow row is committed
<data dir>/spool/tmp/            blobs being written
<data dir>/spool/blobs/ab/cd/<sha256>   content-addressed copies of every flow
<data dir>/partners/<id>/in/     where a partner drops files (locally or over SFTP)
<data dir>/partners/<id>/out/    acknowledgements for that partner
<data dir>/rules/                installed rule packs
<data dir>/gateway.lock          held (flock, exclusive) by the one `gateway run` using this data dir

Permissions (issue 16 §13): the daemon runs with umask 077, so everything it creates — gateway.toml,
gateway.db (and its -wal/-shm), blobs, acknowledgements — is 0600 and the data dir, spool and rules are
0700. Partner folders (partners/<id>, in/, out/) are created 0750 so an operator may give a partner's
own OS group read access (chgrp, plus a default ACL on out/ for the acknowledgements). Modes of folders
that already exist are left as the operator set them; gateway.toml and gateway.db are tightened to
0600 on every start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig, load_config_file
from gateway.errors import ConfigError, GatewayError
from gateway.resources import resource_path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PARTNER_DIR_MODE = 0o750
DAEMON_UMASK = 0o077
RUN_LOCK_NAME = "gateway.lock"


class DataDirBusy(GatewayError):
    """Another `gateway run` holds the data dir's lock."""


def _mkdir(path: Path, mode: int) -> None:
    """Create `path` (and missing parents) with `mode` exactly; an existing folder keeps its mode."""
    if path.is_dir():
        return
    if not path.parent.is_dir():
        _mkdir(path.parent, mode)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
        os.chmod(path, mode)  # mkdir's mode goes through the umask


def _tighten(path: Path) -> None:
    """Make an existing private file 0600 (group/other bits removed)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mode & 0o077:
            os.chmod(path, PRIVATE_FILE_MODE)


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "gateway.toml"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def claims(self) -> Path:
        return self.spool / "claim"

    @property
    def tmp(self) -> Path:
        return self.spool / "tmp"

    @property
    def blobs(self) -> Path:
        return self.spool / "blobs"

    @property
    def rules(self) -> Path:
        return self.root / "rules"

    @property
    def run_lock(self) -> Path:
        return self.root / RUN_LOCK_NAME

    def create_root(self) -> None:
        """Create the data dir itself, 0700, if it does not exist."""
        _mkdir(self.root, PRIVATE_DIR_MODE)

    def lock_for_run(self) -> int:
        """Take the exclusive run lock (flock on gateway.lock); returns the descriptor to keep open.

        Only `gateway run` takes it (crash recovery assumes it is alone with the spool and the partners'
        out/ folders); worker-only processes of a scale-out setup will not. Raises DataDirBusy with a
        one-line message when another process holds it. The kernel frees the lock when the process ends,
        however it ends.
        """
        fd = os.open(self.run_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise DataDirBusy(
                f"{self.root} is in use by another gateway run (pid {holder}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def run_lock_holder(self) -> int | None:
        """The pid of the `gateway run` holding the lock, or None when no daemon runs (read-only check)."""
        try:
            fd = os.open(self.run_lock, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def database_url(self, config: GatewayConfig) -> str:
        return config.store.url or f"sqlite:///{self.root / 'gateway.db'}"

    def partner_root(self, config: GatewayConfig, partner_id: str) -> Path:
        partner = config.partners.get(partner_id)  # a partner removed from config keeps its folder
        folder = partner.folder if partner else ""
        if folder:
            path = Path(folder)
            return path if path.is_absolute() else self.root / path
        return self.root / "partners" / partner_id

    def inbox(self, config: GatewayConfig, partner_id: str) -> Path:
        return self.partner_root(config, partner_id) / "in"

    def outbox(self, config: GatewayConfig, partner_id: str) -> Path:
        return self.partner_root(config, partner_id) / "out"

    def write_default_config(self) -> bool:
        """Write the commented default gateway.toml if there is none; True if written."""
        if self.config_file.exists():
            return False
        self.create_root()
        tmp = self.config_file.with_suffix(".toml.part")
        shutil.copyfile(resource_path("config", "gateway.toml"), tmp)
        os.chmod(tmp, PRIVATE_FILE_MODE)
        tmp.replace(self.config_file)
        return True

    def load_config(self) -> GatewayConfig:
        return load_config_file(self.config_file)

    def prepare(self, config: GatewayConfig) -> None:
        """Create every folder the configuration names (idempotent), with the modes described above."""
        self.create_root()
        for path in (self.claims, self.tmp, self.blobs, self.rules):
            _mkdir(path, PRIVATE_DIR_MODE)
        _tighten(self.config_file)
        database = self.root / "gateway.db"
        if self.database_url(config) == f"sqlite:///{database}":
            if not database.exists():  # SQLite gives -wal and -shm the mode of the database file
                os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE))
            for path in (
                database,
                database.with_name("gateway.db-wal"),
                database.with_name("gateway.db-shm"),
            ):
                _tighten(path)
        spool_device = self.claims.stat().st_dev
        for partner_id, partner in config.partners.items():
            if partner.enabled:
                inbox = self.inbox(config, partner_id)
                _mkdir(inbox, PARTNER_DIR_MODE)
                _mkdir(self.outbox(config, partner_id), PARTNER_DIR_MODE)
                if inbox.stat().st_dev != spool_device:
                    raise ConfigError(
                        f"partners.{partner_id}.folder: {inbox} is on another filesystem than {self.spool}; "
                        "files are taken by an atomic rename, so both must be on the same filesystem"
                    )
