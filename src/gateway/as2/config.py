"""`[as2]` and `[partners.<id>.as2]` configuration models (pydantic, `extra="forbid"`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# pyas2lib's names (pyas2lib.constants); md5 and sha1 are accepted only if an operator lists them.
DIGESTS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
CIPHERS = ("tripledes_192_cbc", "rc2_128_cbc", "rc4_128_cbc", "aes_128_cbc", "aes_192_cbc", "aes_256_cbc")
Digest = Literal["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]
Cipher = Literal[
    "tripledes_192_cbc", "rc2_128_cbc", "rc4_128_cbc", "aes_128_cbc", "aes_192_cbc", "aes_256_cbc"
]
AS2_ID_PATTERN = r"^[\x21-\x7e ]{1,128}$"  # RFC 4130 §6.2: printable ASCII, at most 128 characters


def _default_digests() -> list[Digest]:
    return ["sha256", "sha384", "sha512"]


def _default_ciphers() -> list[Cipher]:
    return ["aes_128_cbc", "aes_192_cbc", "aes_256_cbc"]


class As2Config(BaseModel):
    """Our AS2 station: the listener and our identity (key and certificate)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="run the AS2 listener")
    host: str = "127.0.0.1"
    port: int = Field(4080, ge=0, le=65535)
    path: str = Field("/as2", pattern=r"^/[A-Za-z0-9._~/-]*$", description="URL path partners POST to")
    as2_id: str = Field("", pattern=r"^$|" + AS2_ID_PATTERN[1:], description="our AS2 name (AS2-To)")
    private_key: str = Field("as2/key.pem", description="PEM private key (relative to the data dir)")
    certificate: str = Field("as2/cert.pem", description="PEM certificate of that key")
    max_message_bytes: int = Field(110_000_000, gt=0, description="larger HTTP bodies get 413")
    mdn_timeout_seconds: float = Field(30.0, gt=0, description="HTTP timeout of outgoing AS2 POSTs")

    @model_validator(mode="after")
    def _id_when_enabled(self) -> As2Config:
        if self.enabled and not self.as2_id:
            raise ValueError("as2.as2_id is required when the AS2 listener is enabled")
        return self


class PartnerAs2Config(BaseModel):
    """What a partner's AS2 station is and must do."""

    model_config = ConfigDict(extra="forbid")

    as2_id: str = Field(pattern=AS2_ID_PATTERN, description="the partner's AS2 name (AS2-From)")
    certificate: str = Field(description="the partner's PEM certificate (relative to the data dir)")
    sign: bool = Field(True, description="its messages must be signed")
    encrypt: bool = Field(True, description="its messages must be encrypted")
    compress: bool = Field(False, description="compress what we send it (acknowledgements)")
    mdn_mode: Literal["sync", "async"] = "sync"
    mdn_url: str = Field("", pattern=r"^$|^https?://", description="where async MDNs are POSTed")
    url: str = Field("", pattern=r"^$|^https?://", description="its AS2 endpoint (deliver_acks)")
    digest_algorithms: list[Digest] = Field(default_factory=_default_digests)
    encryption_algorithms: list[Cipher] = Field(default_factory=_default_ciphers)
    deliver_acks: bool = Field(False, description="also send each acknowledgement by AS2")

    @model_validator(mode="after")
    def _urls(self) -> PartnerAs2Config:
        if self.mdn_mode == "async" and not self.mdn_url:
            raise ValueError("mdn_url is required when mdn_mode = 'async'")
        if self.deliver_acks and not self.url:
            raise ValueError("url (the partner's AS2 endpoint) is required when deliver_acks = true")
        if not self.digest_algorithms or not self.encryption_algorithms:
            raise ValueError("digest_algorithms and encryption_algorithms must not be empty")
        return self
