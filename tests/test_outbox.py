"""The transactional outbox on SQLite and PostgreSQL: enqueue with the decision, claim with a lease,
sent / retry with backoff / dead, acks never dead, ordering of one flow's ack files, concurrent claims."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.store.db import Store, utcnow
from gateway.store.models import OutboxRow
from gateway.store.outbox import DEAD, PENDING, SENT, Outbox, OutboxItem, RetryPolicy, enqueue, resend


@pytest.fixture
def store(store_url: str) -> Store:
    s = Store(store_url)
    s.migrate()
    return s


def _state(store: Store, row_id: int) -> tuple[str, int]:
    with store.reader() as conn:
        row = conn.execute(select(OutboxRow.state, OutboxRow.attempts).where(OutboxRow.id == row_id)).one()
    return row.state, row.attempts


def test_enqueue_commits_with_the_transaction_and_wakes_after_commit(store: Store) -> None:
    woken: list[int] = []
    store.after_outbox_commit.append(lambda: woken.append(1))
    with pytest.raises(RuntimeError), store.transaction() as conn:
        enqueue(conn, kind="delivery", sink="partner:b", remote_name="x.xml", payload=b"<x/>")
        raise RuntimeError("the decision failed")
    assert woken == []
    with store.reader() as conn:
        assert conn.execute(select(OutboxRow.id)).first() is None
    with store.transaction() as conn:
        row_id = enqueue(conn, kind="delivery", sink="partner:b", remote_name="x.xml", payload=b"<x/>",
                         flow_id="f1", invoice_id=7, meta={"syntax": "ubl"})  # fmt: skip
        assert woken == []  # not before the commit
    assert woken == [1]
    outbox = Outbox(store)
    item = outbox.claim("w1", 60)
    assert item == OutboxItem(row_id, "delivery", "partner:b", "x.xml",
                              item.payload_sha256 if item else None, "f1", 7, {"syntax": "ubl"}, 1)  # fmt: skip
    assert item is not None and outbox.payload(item) == b"<x/>"
    assert outbox.claim("w2", 60) is None  # leased
    assert outbox.mark_sent(item, "w1", "written")
    assert _state(store, row_id) == (SENT, 1)


def test_bad_rows_are_refused(store: Store) -> None:
    with store.transaction() as conn:
        for kwargs in (
            dict(kind="telegram", sink="s", remote_name="a", payload=b"x"),
            dict(kind="ack", sink="", remote_name="a", payload=b"x"),
            dict(kind="ack", sink="s", remote_name="../a", payload=b"x"),
            dict(kind="ack", sink="s", remote_name="a"),
            dict(kind="ack", sink="s", remote_name="a", payload=b"x", payload_sha256="0" * 64),
        ):
            with pytest.raises(ValueError):
                enqueue(conn, **kwargs)  # type: ignore[arg-type]


def test_retry_with_backoff_then_dead(store: Store) -> None:
    with store.transaction() as conn:
        row_id = enqueue(conn, kind="delivery", sink="partner:b", remote_name="d.xml", payload=b"d")
    outbox = Outbox(store)
    policy = RetryPolicy(max_attempts=3, backoff_base_seconds=10, backoff_max_seconds=15)
    now = utcnow()
    item = outbox.claim("w", 60, now=now)
    assert item is not None
    assert outbox.mark_failed(item, "w", "down", policy, now=now) == "retry"
    assert outbox.claim("w", 60, now=now + timedelta(seconds=9)) is None  # backoff 10 s
    item = outbox.claim("w", 60, now=now + timedelta(seconds=11))
    assert item is not None and item.attempts == 2
    assert outbox.mark_failed(item, "w", "down", policy, now=now + timedelta(seconds=11)) == "retry"
    assert outbox.claim("w", 60, now=now + timedelta(seconds=11 + 14)) is None  # 20 s capped to 15
    item = outbox.claim("w", 60, now=now + timedelta(seconds=11 + 16))
    assert item is not None and item.attempts == 3
    dead_seen: list[int] = []
    outcome = outbox.mark_failed(item, "w", "down", policy, on_dead=[lambda _c, it: dead_seen.append(it.id)])
    assert outcome == "dead" and dead_seen == [row_id]
    assert _state(store, row_id) == (DEAD, 3)
    with store.transaction() as conn:
        assert resend(conn, row_id)
        assert not resend(conn, row_id)  # pending already
    assert _state(store, row_id) == (PENDING, 0)


def test_permanent_error_is_dead_at_once_but_acks_never_die(store: Store) -> None:
    with store.transaction() as conn:
        delivery = enqueue(conn, kind="delivery", sink="s", remote_name="d.xml", payload=b"d")
        ack = enqueue(conn, kind="ack", sink="partner:a", remote_name="a.ack.xml", payload=b"a", flow_id="f")
    outbox = Outbox(store)
    policy = RetryPolicy(max_attempts=1, backoff_base_seconds=1, backoff_max_seconds=2)
    now = utcnow()
    first = outbox.claim("w", 60, now=now)
    assert first is not None and first.id == delivery
    assert outbox.mark_failed(first, "w", "refused", policy, permanent=True, now=now) == "dead"
    for n in range(5):
        at = now + timedelta(seconds=3 * n)
        item = outbox.claim("w", 60, now=at)
        assert item is not None and item.id == ack
        assert outbox.mark_failed(item, "w", "read-only", policy, permanent=True, now=at) == "retry"
    assert _state(store, ack) == (PENDING, 5)


def test_one_flows_ack_files_go_out_in_order(store: Store) -> None:
    with store.transaction() as conn:
        json_row = enqueue(
            conn, kind="ack", sink="partner:a", remote_name="f.ack.json", payload=b"{}", flow_id="f"
        )
        xml_row = enqueue(
            conn, kind="ack", sink="partner:a", remote_name="f.ack.xml", payload=b"<a/>", flow_id="f"
        )
    outbox = Outbox(store)
    first = outbox.claim("w1", 60)
    assert first is not None and first.id == json_row
    assert outbox.claim("w2", 60) is None  # the XML of record waits for its JSON copy
    assert outbox.mark_sent(first, "w1", "ok")
    second = outbox.claim("w2", 60)
    assert second is not None and second.id == xml_row


def test_lost_lease_is_reported_and_the_row_is_sent_again(store: Store) -> None:
    with store.transaction() as conn:
        row_id = enqueue(conn, kind="delivery", sink="s", remote_name="d.xml", payload=b"d")
    outbox = Outbox(store)
    now = utcnow()
    stale = outbox.claim("dead-worker", 1, now=now)
    assert stale is not None
    again = outbox.claim(
        "w2", 60, now=now + timedelta(seconds=10)
    )  # the lease expired: another worker takes it
    assert again is not None and again.id == row_id and again.attempts == 2
    assert not outbox.mark_sent(stale, "dead-worker", "late")
    assert outbox.mark_failed(stale, "dead-worker", "late", RetryPolicy()) == "lost"
    assert outbox.mark_sent(again, "w2", "ok")


def test_release_stale_leases(store: Store) -> None:
    with store.transaction() as conn:
        enqueue(conn, kind="delivery", sink="s", remote_name="d.xml", payload=b"d")
    outbox = Outbox(store)
    assert outbox.claim("w", 600) is not None
    assert outbox.release_stale_leases() == 0
    assert outbox.release_stale_leases(all_leases=True) == 1
    assert outbox.claim("w2", 600) is not None


def test_concurrent_claims_take_each_row_once(store: Store) -> None:
    with store.transaction() as conn:
        ids = {
            enqueue(conn, kind="delivery", sink="s", remote_name=f"{n}.xml", payload=b"d") for n in range(60)
        }
    outbox = Outbox(store)
    taken: list[int] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while (item := outbox.claim(name, 60)) is not None:
            assert outbox.mark_sent(item, name, "ok")
            with lock:
                taken.append(item.id)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == sorted(ids)
