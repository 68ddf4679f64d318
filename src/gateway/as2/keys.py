"""Key pairs and self-signed certificates for AS2 (first setups and tests), and loading them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.fsutil import fsync_dir


@dataclass(frozen=True)
class KeyPair:
    key_pem: bytes
    cert_pem: bytes


def make_key_pair(common_name: str, *, days: int = 3650, bits: int = 3072) -> KeyPair:
    """An RSA key and a self-signed certificate naming `common_name` (AS2 signs and encrypts with RSA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "as2")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )  # fmt: skip
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return KeyPair(key_pem, cert.public_bytes(serialization.Encoding.PEM))


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the start (temp name, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def certificate_summary(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":")
    return f"subject {cert.subject.rfc4514_string()}, valid until {cert.not_valid_after_utc:%Y-%m-%d}, " \
        f"SHA-256 {fingerprint}"  # fmt: skip
