"""Every recorded lifecycle status is a signed-webhook event for the issuer's and the recipient's hooks."""

from __future__ import annotations

import json

from sqlalchemy import select

from gateway.api.webhooks import create_webhook
from gateway.config import LifecycleConfig
from gateway.runtime.lifecycle_flow import LifecycleOutbound, invoice_row
from gateway.store.db import Store
from gateway.store.lifecycle import record_status
from gateway.store.models import OutboxRow
from gateway.store.outbox import enqueue
from test_lifecycle_store import add_invoice, store  # noqa: F401 - the store fixture


def _hook(db: Store, partner: str) -> str:
    with db.transaction() as conn:
        hook = create_webhook(
            conn,
            partner,
            {"callbackUrl": f"https://{partner}.example/hook"},
            max_per_partner=5,
            https_only=True,
        )
    return hook.id


def test_a_status_is_an_event_for_issuer_and_recipient_webhooks(store: Store) -> None:  # noqa: F811
    issuer_hook, recipient_hook = _hook(store, "seller-co"), _hook(store, "buyer-co")
    _hook(store, "bystander")
    invoice_id = add_invoice(store, "seller-co", "F-7")
    outbound = LifecycleOutbound(LifecycleConfig())
    with store.transaction() as conn:  # delivered to buyer-co: it is the recipient
        enqueue(conn, kind="delivery", sink="partner:buyer-co", remote_name="F-7.xml", payload=b"<x/>",
                invoice_id=invoice_id)  # fmt: skip
        recorded = record_status(conn, invoice_id, "200", actor="platform", source_flow="flow-x")
        outbound.on_recorded(conn, recorded, invoice_row(conn, invoice_id))
    with store.reader() as conn:
        rows = conn.execute(select(OutboxRow).where(OutboxRow.kind == "webhook")).all()
    assert sorted(r.sink for r in rows) == sorted([f"webhook:{issuer_hook}", f"webhook:{recipient_hook}"])
    body = json.loads(rows[0].payload)
    assert body["eventType"] == "invoice.status" and body["statusCode"] == "200"
    assert body["invoiceNumber"] == "F-7" and body["flowId"] == "flow-x" and body["statusLabel"] == "Déposée"


def test_a_refused_status_sends_no_event(store: Store) -> None:  # noqa: F811
    _hook(store, "seller-co")
    invoice_id = add_invoice(store, "seller-co", "F-8")
    try:
        with store.transaction() as conn:
            record_status(conn, invoice_id, "212", actor="recipient")  # 212 before 203: refused
    except Exception:  # noqa: BLE001 - StatusRefused; the transaction rolled back
        pass
    with store.reader() as conn:
        assert conn.execute(select(OutboxRow).where(OutboxRow.kind == "webhook")).first() is None
