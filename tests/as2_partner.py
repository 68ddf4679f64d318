"""The partner's side of AS2 in tests: pyas2lib builds its messages and checks our MDNs; a small HTTP
server receives what we POST back (async MDNs, acknowledgements sent by AS2)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from gateway.as2.keys import KeyPair, make_key_pair
from gateway.as2.oscrypto_fix import load_oscrypto

load_oscrypto()

from pyas2lib import Mdn, Message, Organization, Partner  # noqa: E402

GATEWAY_ID = "FLOWGW"
PARTNER_ID = "ACME-AS2"
_KEYS: dict[str, KeyPair] = {}


def keys(name: str) -> KeyPair:
    """Key pairs are slow to make: one per name per test session (2048 bits is enough for tests)."""
    if name not in _KEYS:
        _KEYS[name] = make_key_pair(name, bits=2048)
    return _KEYS[name]


def write_gateway_keys(root: Path) -> None:
    (root / "as2").mkdir(parents=True, exist_ok=True)
    (root / "as2" / "key.pem").write_bytes(keys("gateway").key_pem)
    (root / "as2" / "cert.pem").write_bytes(keys("gateway").cert_pem)
    (root / "as2" / "acme.pem").write_bytes(keys("partner").cert_pem)


def partner_toml(partner: str = "acme", **settings: Any) -> str:
    values: dict[str, Any] = {"as2_id": PARTNER_ID, "certificate": "as2/acme.pem", **settings}
    lines = [f"[partners.{partner}.as2]"]
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def as2_toml(port: int) -> str:
    return f'[as2]\nenabled = true\nport = {port}\nas2_id = "{GATEWAY_ID}"\n'


@dataclass
class PartnerStation:
    """The partner (sender): its organization, and the gateway as its partner."""

    sign_with: str = "partner"  # key name the partner signs with (another name = a bad signature)
    encrypt_to: str = "gateway"  # certificate it encrypts for (another name = undecryptable)
    as2_name: str = PARTNER_ID
    mdn_url: str | None = None

    def organization(self) -> Any:
        pair = keys(self.sign_with)
        return Organization(as2_name=self.as2_name, sign_key=pair.key_pem + pair.cert_pem,
                            decrypt_key=keys("partner").key_pem + keys("partner").cert_pem,
                            mdn_url=self.mdn_url, domain="acme.example")  # fmt: skip

    def gateway(self, *, sign: bool, encrypt: bool, compress: bool, mdn: str | None = "SYNC",
                enc_alg: str = "aes_256_cbc", digest_alg: str = "sha256", to: str = GATEWAY_ID) -> Any:  # fmt: skip
        cert = keys(self.encrypt_to).cert_pem
        return Partner(as2_name=to, verify_cert=keys("gateway").cert_pem, encrypt_cert=cert, sign=sign,
                       encrypt=encrypt, compress=compress, enc_alg=enc_alg, digest_alg=digest_alg,
                       mdn_mode=mdn, mdn_digest_alg="sha256" if mdn else None)  # fmt: skip

    def build(self, data: bytes, filename: str, **gateway: Any) -> Any:
        message = Message(self.organization(), self.gateway(**gateway))
        message.build(data, filename=filename, content_type="application/octet-stream")
        return message


def post(url: str, message: Any, *, body: bytes | None = None) -> httpx.Response:
    return httpx.post(url, headers=dict(message.headers), content=message.content if body is None else body,
                      timeout=30)  # fmt: skip


def check_mdn(message: Any, headers: dict[str, str] | httpx.Headers, body: bytes) -> tuple[str, str | None]:
    """pyas2lib verifies the MDN: our signature (with the gateway's certificate) and the MIC."""
    raw = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1") + b"\r\n" + body
    status, detail = Mdn().parse(raw, lambda _mid, _rcpt: message)
    return str(status), detail


def mdn_fields(body: bytes, headers: dict[str, str] | httpx.Headers) -> dict[str, str]:
    """Disposition and Received-content-MIC of an MDN (signed or not)."""
    from email import message_from_bytes

    raw = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1") + b"\r\n" + body
    found: dict[str, str] = {}
    for part in message_from_bytes(raw).walk():
        if part.get_content_type() == "message/disposition-notification":
            report = part.get_payload()[0]
            for key in ("Disposition", "Received-content-MIC", "Original-Message-ID"):
                if report.get(key):
                    found[key] = " ".join(str(report.get(key)).split())
    return found


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server for what the gateway POSTs to the partner; answers `status` (AS2 documents get a
    signed MDN built with pyas2lib, like a real partner station)."""

    status: int = 200
    received: list[Received] = field(default_factory=list)
    documents: list[tuple[str, bytes, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k: v for k, v in self.headers.items()}
                outer.received.append(Received(self.path, headers, body))
                reply_headers, reply = outer.answer(headers, body)
                self.send_response(outer.status)
                for key, value in reply_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        if self.status != 200 or "as2-from" not in {k.lower() for k in headers} or self.path_is_mdn(headers):
            return {}, b""
        message = Message()
        raw = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1") + b"\r\n" + body
        org = Organization(as2_name=PARTNER_ID, sign_key=keys("partner").key_pem + keys("partner").cert_pem,
                           decrypt_key=keys("partner").key_pem + keys("partner").cert_pem)  # fmt: skip
        gateway = Partner(as2_name=GATEWAY_ID, verify_cert=keys("gateway").cert_pem, sign=True, encrypt=True)
        status, exc, mdn = message.parse(raw, find_org_cb=lambda _i: org, find_partner_cb=lambda _i: gateway)
        filename = message.payload.get_filename() if message.payload is not None else None
        self.documents.append((str(status), bytes(message.content or b""), filename))
        if mdn is None:
            return {}, b""
        return {k: v for k, v in mdn.headers.items()}, mdn.content

    @staticmethod
    def path_is_mdn(headers: dict[str, str]) -> bool:
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        return not content_type.startswith("application/pkcs7-mime")  # our documents are encrypted

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
