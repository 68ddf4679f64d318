"""Store: dedup on (partner, sha256), guarded transitions with their event rows, claims and leases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from gateway.statemachine import FlowState
from gateway.store.db import InvoiceRecord, Store, new_flow_id
from gateway.store.queries import get_flow_detail, list_flows


def _receive(
    store: Store, sha: str | None = "a" * 64, partner: str = "acme", flow_id: str | None = None
) -> tuple[str, str | None]:
    fid = flow_id or new_flow_id()
    dup = store.record_received(
        flow_id=fid, partner=partner, source="folder", filename="f.xml", size=10, sha256=sha,
        received_at=datetime.now(UTC), worker="t",
    )  # fmt: skip
    return fid, dup


def _store(url: str) -> Store:
    store = Store(url)
    store.migrate()
    return store


def test_migrate_is_idempotent(store_url: str) -> None:
    from gateway.store.db import head_revision

    store = _store(store_url)
    assert store.migrate() == head_revision()
    assert store.check_schema() == head_revision()
    store.close()


def test_duplicate_content_points_at_original(store_url: str) -> None:
    store = _store(store_url)
    first, dup1 = _receive(store)
    second, dup2 = _receive(store)
    other_partner, dup3 = _receive(store, partner="other")
    assert dup1 is None and dup2 == first and dup3 is None
    # recording the same flow id again (crash recovery) is a no-op
    assert _receive(store, flow_id=second)[1] == first
    assert len(list_flows(store)) == 3
    store.close()


def test_claim_advance_and_events(store_url: str) -> None:
    store = _store(store_url)
    fid, _ = _receive(store)
    flow = store.claim_next("w1", 60)
    assert flow is not None and flow.id == fid and flow.claims == 1
    assert store.claim_next("w2", 60) is None  # leased
    assert store.advance(flow, FlowState.RECEIVED, FlowState.IDENTIFIED, worker="w1", stage="identify")
    # guarded: the expected state no longer matches
    assert not store.advance(flow, FlowState.RECEIVED, FlowState.IDENTIFIED, worker="w1", stage="identify")
    # another worker without the lease cannot move it
    assert not store.advance(
        flow, FlowState.IDENTIFIED, FlowState.TRANSFORMED, worker="w2", stage="transform"
    )
    inv = InvoiceRecord(
        1, "f.xml", "ubl-invoice", None, {"number": "N1"}, "accepted", None, None, {"outcome": "valid"}
    )
    assert store.advance(
        flow,
        FlowState.IDENTIFIED,
        FlowState.REJECTED,
        worker="w1",
        stage="validate",
        invoices=[inv],
        release=True,
    )
    events = get_flow_detail(store, fid)["events"]
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "RECEIVED"),
        ("RECEIVED", "IDENTIFIED"),
        ("IDENTIFIED", "REJECTED"),
    ]
    assert store.flow_invoices(fid)[0]["number"] == "N1"
    assert store.claim_next("w2", 60) is None  # terminal
    store.close()


def test_expired_lease_is_taken_over(store_url: str) -> None:
    store = _store(store_url)
    _receive(store)
    past = datetime.now(UTC) - timedelta(minutes=10)
    assert store.claim_next("dead", 60, now=past) is not None
    flow = store.claim_next("alive", 60)
    assert flow is not None and flow.claims == 2
    store.close()


def test_concurrent_claims_never_share_a_flow(store_url: str) -> None:
    store = _store(store_url)
    ids = {_receive(store, sha=f"{i:064x}")[0] for i in range(40)}
    taken: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (flow := store.claim_next(name, 60)) is not None:
            assert store.advance(
                flow, FlowState.RECEIVED, FlowState.REJECTED, worker=name, stage="t", release=True
            )
            with lock:
                taken.append(flow.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(ids)
    store.close()
