"""An in-process Flow Service API for tests: uvicorn on port 0 over a real store, blob store and intake."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from gateway.api.server import ApiServer
from gateway.api.tokens import create_token
from gateway.config import parse_config
from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.models import FlowRow
from gateway.telemetry.metrics import Metrics

MAX_BYTES = 50_000


@dataclass
class Api:
    server: ApiServer
    store: Store
    root: Path
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def client(self, partner: str | None = "demo", **headers: str) -> httpx.Client:
        if partner is not None:
            headers["Authorization"] = f"Bearer {self.tokens[partner]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=20)

    def flows(self) -> list[Any]:
        with self.store.reader() as conn:
            return list(conn.execute(select(FlowRow.id, FlowRow.partner, FlowRow.source, FlowRow.sha256)))

    def leftovers(self) -> list[Path]:
        """Anything left in claims or blobs (nothing may be taken by a refused request)."""
        return [p for d in ("claims", "blobs") for p in (self.root / d).rglob("*") if p.is_file()]


def start_api(root: Path, store_url: str, **api: Any) -> Api:
    config = parse_config(
        {
            "intake": {"max_flow_bytes": MAX_BYTES},
            # the tests' receivers listen on loopback: private callback URLs allowed unless a test says not
            "api": {"enabled": True, "port": 0, "webhook_allow_private_networks": True, **api},
            "partners": {"demo": {}, "acme": {}, "off": {"enabled": False}},
        }
    )
    for name in ("claims", "blobs", "tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    store = Store(store_url)
    store.migrate()
    blobs = BlobStore(root / "blobs", root / "tmp")
    intake = Intake(store, blobs, root / "claims", MAX_BYTES, "test", Metrics())
    server = ApiServer(config, store, intake, blobs, lambda partner: root / "partners" / partner / "out")
    tokens = {}
    with store.transaction() as conn:
        for partner in ("demo", "acme", "off"):
            tokens[partner] = create_token(conn, partner)[1]
    server.start()
    return Api(server, store, root, tokens)


@dataclass
class Receiver:
    """A webhook endpoint: records what it gets, answers the next status of `answers` (then 200)."""

    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gateway"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-path"] = self.path  # which callback URL was called
                receiver.received.append((headers, body))
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def receiver_checks(signing_key: str, headers: dict[str, str], body: bytes) -> None:
    """What a partner's receiver does, written from the standard's text, not with the gateway's code."""
    timestamp = headers["afnor-signature-timestamp"]
    assert abs(time.time() - int(timestamp)) < 300  # recent: an old event replayed would be refused
    fingerprint = hashlib.sha256(body + b"@" + timestamp.encode()).hexdigest()
    expected = hmac.new(base64.b64decode(signing_key), fingerprint.encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(base64.b64decode(headers["afnor-signature"]), expected)
