"""Console test helpers: a real uvicorn server in a thread, a store filled by the real pipeline, sign-in."""

from __future__ import annotations

import importlib
import inspect
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from lxml import etree

from gateway.config import GatewayConfig
from gateway.datadir import DataDir
from gateway.outbound.local_dir import FolderSink
from gateway.runtime.intake import Intake
from gateway.runtime.pipeline import Pipeline
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.telemetry.metrics import Metrics
from gateway.transforms.identify import Identifier

from invoice_factory import make_cii, make_ubl

PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


class ConsoleServer:
    """Serve an ASGI app with uvicorn on a free loopback port, in a thread; every wait is bounded."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ConsoleServer:
        self.thread.start()
        end = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise AssertionError("the console server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


def break_totals(xml: bytes) -> bytes:
    """Change the amount due so BR-CO-16 (due = total - prepaid + rounding) fails."""
    doc = etree.fromstring(xml)
    ns = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    payable = doc.find(".//cbc:PayableAmount", ns)
    assert payable is not None
    payable.text = "999999.99"
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def crash_twice(store: Store, flow_id: str) -> None:
    """Two workers took the flow and died without a word (their leases expired): the next take
    quarantines it (`workers.max_crashes` = 2), as after a real poison file."""
    for hours_ago in (2, 1):
        taken = store.claim_next("dead-worker", 60, now=datetime.now(UTC) - timedelta(hours=hours_ago))
        assert taken is not None and taken.id == flow_id


@dataclass
class Seeded:
    accepted: str
    rejected: str
    garbage: str
    quarantined: str
    cii: str


def make_data_dir(root: Path, config: GatewayConfig) -> DataDir:
    data_dir = DataDir(root)
    data_dir.prepare(config)
    return data_dir


def seed_with_pipeline(store: Store, data_dir: DataDir, config: GatewayConfig, engine: Any) -> Seeded:
    """Flows taken by the real intake and processed by the real pipeline (one worker, in-process)."""
    blobs = BlobStore(data_dir.blobs, data_dir.tmp)
    metrics = Metrics()
    intake = Intake(store, blobs, data_dir.claims, 10_000_000, "seed", metrics)

    def take(partner: str, name: str, data: bytes) -> str:
        return intake.take_bytes(partner, data, name, "folder").flow_id

    poison = take("acme", "poison.xml", make_ubl(lines=1, number="Q-2026-1"))
    crash_twice(store, poison)
    ids = Seeded(
        accepted=take("acme", "good.xml", make_ubl(lines=2, number="F-2026-001")),
        rejected=take("acme", "bad-totals.xml", break_totals(make_ubl(lines=2, number="F-2026-002"))),
        garbage=take("demo", "garbage.bin", b"\x00\x01 not an invoice"),
        quarantined=poison,
        cii=take("demo", "cii.xml", make_cii(lines=1, number="C-2026-7")),
    )
    pipeline, deliver = build_pipeline(store, data_dir, config, engine, blobs, metrics)
    drain(store, pipeline, deliver)
    return ids


def build_pipeline(
    store: Store, data_dir: DataDir, config: GatewayConfig, engine: Any, blobs: BlobStore, metrics: Metrics
) -> tuple[Pipeline, Callable[[], int]]:
    """The real pipeline, and what sends what it leaves behind: acks written by the pipeline itself
    (a `sink_for` argument), or, once acknowledgements leave through the outbox, its delivery worker."""
    if "sink_for" in inspect.signature(Pipeline).parameters:
        pipeline = Pipeline(
            config, store, blobs, lambda partner: FolderSink(data_dir.outbox(config, partner)),  # type: ignore[call-arg]
            Identifier(), engine, metrics, "seed-worker",
        )  # fmt: skip
        return pipeline, lambda: 0
    delivery = importlib.import_module("gateway.runtime.delivery")
    routing = importlib.import_module("gateway.runtime.routing")
    outbox = importlib.import_module("gateway.store.outbox")
    pipeline = Pipeline(config, store, blobs, Identifier(), engine, metrics, "seed-worker",  # type: ignore[call-arg,arg-type]
                        router=routing.Router(config, blobs))  # fmt: skip
    worker = delivery.DeliveryWorker(store, outbox.Outbox(store, blobs), delivery.build_sinks(data_dir, config),
                                     config.delivery, metrics, "seed-delivery")  # fmt: skip

    def deliver() -> int:
        sent = 0
        while worker.run_once():
            sent += 1
        return sent

    return pipeline, deliver


def drain(store: Store, pipeline: Pipeline, deliver: Callable[[], int], limit: int = 50) -> int:
    """Process every workable flow, then send what they left in the outbox (if there is one)."""
    done = 0
    while done < limit and (flow := store.claim_next("seed-worker", 300)) is not None:
        pipeline.process(flow)
        done += 1
    deliver()
    return done


def csrf_of(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    """Sign in through the login form (its token cookie and field); returns the final response."""
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"name": name, "password": password, "csrf_token": csrf_of(page.text), "next": ""},
        follow_redirects=True,
    )
