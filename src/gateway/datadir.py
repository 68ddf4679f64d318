"""The data directory: where config, database, spool and partner folders live.

<data dir>/gateway.toml          configuration (written, commented, on first start)
<data dir>/gateway.db            SQLite store (WAL) unless store.url says otherwise
<data dir>/spool/claim/<partner>/<flow id>/<file>   files taken from in/, until their flow row is committed
<data dir>/spool/tmp/            blobs being written
<data dir>/spool/blobs/ab/cd/<sha256>   content-addressed copies of every flow
<data dir>/partners/<id>/in/     where a partner drops files (locally or over SFTP)
<data dir>/partners/<id>/out/    acknowledgements for that partner
<data dir>/rules/                installed rule packs
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig, load_config_file
from gateway.errors import ConfigError
from gateway.resources import resource_path


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
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.config_file.with_suffix(".toml.part")
        shutil.copyfile(resource_path("config", "gateway.toml"), tmp)
        tmp.replace(self.config_file)
        return True

    def load_config(self) -> GatewayConfig:
        return load_config_file(self.config_file)

    def prepare(self, config: GatewayConfig) -> None:
        """Create every folder the configuration names (idempotent)."""
        for path in (self.claims, self.tmp, self.blobs, self.rules):
            path.mkdir(parents=True, exist_ok=True)
        spool_device = self.claims.stat().st_dev
        for partner_id, partner in config.partners.items():
            if partner.enabled:
                inbox = self.inbox(config, partner_id)
                inbox.mkdir(parents=True, exist_ok=True)
                self.outbox(config, partner_id).mkdir(parents=True, exist_ok=True)
                if inbox.stat().st_dev != spool_device:
                    raise ConfigError(
                        f"partners.{partner_id}.folder: {inbox} is on another filesystem than {self.spool}; "
                        "files are taken by an atomic rename, so both must be on the same filesystem"
                    )
