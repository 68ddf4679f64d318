"""An in-process Flow Service API for tests: uvicorn on port 0 over a real store, blob store and intake."""

from __future__ import annotations

from dataclasses import dataclass
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
            "api": {"enabled": True, "port": 0, **api},
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
