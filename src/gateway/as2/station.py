"""Our AS2 station and its partners as pyas2lib objects, loaded once from the configuration's PEM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.as2.config import As2Config, PartnerAs2Config
from gateway.as2.oscrypto_fix import load_oscrypto
from gateway.config import GatewayConfig
from gateway.errors import ConfigError

ORG_DOMAIN = "flow-gateway.as2"  # right-hand side of the Message-IDs we make


@dataclass(frozen=True)
class As2Partner:
    partner: str  # the gateway's partner id
    config: PartnerAs2Config
    cert_pem: bytes


def _read(root: Path, name: str, what: str) -> bytes:
    path = Path(name)
    path = path if path.is_absolute() else root / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


class As2Station:
    """Our Organization (signing and decryption key) and the partners by AS2 id."""

    def __init__(self, as2: As2Config, config: GatewayConfig, root: Path) -> None:
        load_oscrypto()
        from pyas2lib import Organization

        self.config = as2
        self.as2_id = as2.as2_id
        key = _read(root, as2.private_key, "as2.private_key")
        cert = _read(root, as2.certificate, "as2.certificate")
        try:
            self.organization: Any = Organization(
                as2_name=as2.as2_id, sign_key=key + b"\n" + cert, decrypt_key=key + b"\n" + cert,
                domain=ORG_DOMAIN,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - pyas2lib's AS2Exception or a PEM error
            raise ConfigError(f"as2.private_key / as2.certificate: {exc}") from None
        self.by_as2_id: dict[str, As2Partner] = {}
        self.by_partner: dict[str, As2Partner] = {}
        for pid, partner in config.partners.items():
            if partner.as2 is None or not partner.enabled:
                continue
            if partner.as2.as2_id in self.by_as2_id:
                raise ConfigError(
                    f"partners.{pid}.as2.as2_id: {partner.as2.as2_id!r} is used by another partner"
                )
            entry = As2Partner(pid, partner.as2, _read(root, partner.as2.certificate, f"partners.{pid}.as2"))
            try:
                self.lib_partner(entry).load_verify_cert()  # a bad or expired certificate: an error now
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - pyas2lib / oscrypto errors
                raise ConfigError(f"partners.{pid}.as2.certificate: {exc}") from None
            self.by_as2_id[partner.as2.as2_id] = entry
            self.by_partner[pid] = entry

    @staticmethod
    def lib_partner(entry: As2Partner, *, sending: bool = False) -> Any:
        """pyas2lib's Partner: for receiving, what its messages must be; for sending, how we build ours."""
        from pyas2lib import Partner

        cfg = entry.config
        try:
            return Partner(
                as2_name=cfg.as2_id,
                verify_cert=entry.cert_pem,
                encrypt_cert=entry.cert_pem,
                sign=True if sending else cfg.sign,
                encrypt=True if sending else cfg.encrypt,
                compress=cfg.compress,
                enc_alg=cfg.encryption_algorithms[-1],
                digest_alg=cfg.digest_algorithms[0],
                mdn_mode="SYNC" if sending else None,
                mdn_digest_alg=cfg.digest_algorithms[0] if sending else None,
            )
        except Exception as exc:  # noqa: BLE001 - ImproperlyConfigured
            raise ConfigError(f"partners.{entry.partner}.as2: {exc}") from None
