"""Webhooks: events enqueued in the deciding transaction, sent through the outbox by WebhookSink to a
receiver this test runs, signed as the Flow Service standard describes; the receiver checks the
signature with its own code (not the gateway's)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from gateway.api import webhooks
from gateway.api.webhooks import WebhookSink, enqueue_flow_event, signature, verify, webhook_sink_factory
from gateway.outbound.base import PermanentSinkError, TransientSinkError
from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.models import FlowRow
from gateway.store.outbox import Outbox, OutboxItem
from gateway.telemetry.metrics import Metrics

from api_contract import Contract
from api_harness import Receiver, receiver_checks

CONTRACT = Contract()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def make_store(url: str, root: Path) -> tuple[Store, Intake]:
    store = Store(url)
    store.migrate()
    for name in ("claims", "blobs", "tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    blobs = BlobStore(root / "blobs", root / "tmp")
    return store, Intake(store, blobs, root / "claims", 1_000_000, "test", Metrics())


def test_acknowledgement_event_reaches_the_receiver_signed(
    store_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    store, intake = make_store(store_url, tmp_path)
    try:
        with store.transaction() as conn:
            hook = webhooks.create_webhook(
                conn,
                "demo",
                {"callbackUrl": receiver.url, "ackStatus": "Ok"},
                max_per_partner=5,
                https_only=False,
            )
            webhooks.create_webhook(  # filtered out: errors only
                conn, "demo", {"callbackUrl": receiver.url + "/errors", "ackStatus": "Error"},
                max_per_partner=5, https_only=False,
            )  # fmt: skip
            webhooks.create_webhook(  # another partner's
                conn, "acme", {"callbackUrl": receiver.url + "/acme"}, max_per_partner=5, https_only=False
            )
        taken = intake.take_bytes("demo", b"<Invoice/>", "inv.xml", "api")
        # the transaction that records the acknowledgement enqueues the event with it
        with store.transaction() as conn:
            conn.execute(
                update(FlowRow)
                .where(FlowRow.id == taken.flow_id)
                .values(ack_status="Ok", state="ACKNOWLEDGED")
            )
            assert enqueue_flow_event(conn, taken.flow_id) == 1  # = event_body + enqueue_event
        outbox = Outbox(store)
        item = outbox.claim("worker-1", 60, kinds=["webhook"])
        assert item is not None and item.sink == f"webhook:{hook.id}" and item.flow_id == taken.flow_id
        assert outbox.claim("worker-1", 60, kinds=["webhook"]) is None  # exactly one row
        sink = webhook_sink_factory(store, 5)(hook.id)  # what the composition root registers for webhook:
        try:
            receipt = sink.send(item, outbox.payload(item))
        finally:
            sink.close()
        assert outbox.mark_sent(item, "worker-1", receipt)
        assert receipt.startswith("HTTP 200")

        [(headers, sent)] = receiver.received
        receiver_checks(hook.signing_key, headers, sent)
        event = json.loads(sent)
        CONTRACT.validate_component("Flow", event)  # the callback body of the standard is a Flow
        assert event["flowId"] == taken.flow_id and event["acknowledgement"] == {"status": "Ok"}
        assert headers["gateway-event"] == "flow.acknowledged" and headers["gateway-delivery"] == str(item.id)
        # a receiver refuses a tampered body or a stale timestamp
        assert verify(
            hook.signing_key, sent, headers["afnor-signature-timestamp"], headers["afnor-signature"]
        )
        assert not verify(
            hook.signing_key, sent + b" ", headers["afnor-signature-timestamp"], headers["afnor-signature"]
        )
        old = int(headers["afnor-signature-timestamp"]) - 3600
        assert not verify(hook.signing_key, sent, str(old), signature(hook.signing_key, sent, old))
    finally:
        store.close()


def test_answers_are_classified(tmp_path: Path, receiver: Receiver) -> None:
    store, _ = make_store(f"sqlite:///{tmp_path / 'gateway.db'}", tmp_path)
    with store.transaction() as conn:
        hook = webhooks.create_webhook(
            conn, "demo", {"callbackUrl": receiver.url}, max_per_partner=5, https_only=False
        )
    item = OutboxItem(
        1, "webhook", f"webhook:{hook.id}", "flow.acknowledged:x:y", None, None, None, {"event": "e"}
    )
    sink = WebhookSink(store, timeout_seconds=0.5)
    try:
        receiver.answers = [503, 429, 400, 410, 301, 204]
        for expected in (TransientSinkError, TransientSinkError, PermanentSinkError, PermanentSinkError,
                         PermanentSinkError):  # fmt: skip
            with pytest.raises(expected):
                sink.send(item, b"{}")
        assert sink.send(item, b"{}").startswith("HTTP 204")
        receiver.delay = 2.0  # slower than the sink's time-out
        with pytest.raises(TransientSinkError, match="timed out"):
            sink.send(item, b"{}")
        receiver.delay = 0.0
        with store.transaction() as conn:
            webhooks.delete_webhook(conn, "demo", hook.id)
        with pytest.raises(PermanentSinkError, match="deleted"):
            sink.send(item, b"{}")
        with store.transaction() as conn:
            gone = webhooks.create_webhook(
                conn,
                "demo",
                {"callbackUrl": "http://127.0.0.1:1/closed"},
                max_per_partner=5,
                https_only=False,
            )
        with pytest.raises(TransientSinkError):  # nobody listens there
            sink.send(OutboxItem(2, "webhook", f"webhook:{gone.id}", "n", None, None, None, {}), b"{}")
    finally:
        sink.close()
        store.close()


def test_https_only_and_filters() -> None:
    with pytest.raises(webhooks.WebhookError):
        webhooks.check_callback_url("http://example.com/x", https_only=True)
    webhooks.check_callback_url("https://example.com/x", https_only=True)
    hook = webhooks.Webhook(
        "id", "demo", "https://x", "a2V5", {"flowTypes": ["CustomerInvoice"]}, resources_now()
    )
    assert hook.wants({"flowType": "CustomerInvoice", "acknowledgement": {"status": "Ok"}})
    assert not hook.wants({"flowType": "SupplierInvoiceLC"})
    assert hook.wants({"invoiceId": 3, "status": 205})  # a lifecycle event has no flowType: it passes


def resources_now() -> Any:
    from gateway.store.db import utcnow

    return utcnow()
