"""AS2 through the real daemon: pyas2lib as the partner over HTTP; the flow's acknowledgement in out/ and
back by AS2; async MDNs posted to the partner; SIGKILL right after a "processed" MDN loses nothing."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from as2_partner import (
    PartnerStation,
    Receiver,
    as2_toml,
    check_mdn,
    mdn_fields,
    partner_toml,
    post,
    write_gateway_keys,
)
from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_ubl

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as2_rows(data_dir: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(data_dir / "gateway.db") as conn:
        return list(conn.execute("SELECT message_id, result, flow_id FROM as2_messages ORDER BY id"))


def test_daemon_as2_sync_async_and_acks_back_by_as2(tmp_path: Path) -> None:
    receiver = Receiver()
    port = free_port()
    data = tmp_path / "data"
    write_gateway_keys(data)
    extra = partner_toml(compress=True, mdn_mode="async", mdn_url=f"{receiver.url}/mdn", deliver_acks=True,
                         url=f"{receiver.url}/as2") + as2_toml(port)  # fmt: skip
    url = f"http://127.0.0.1:{port}/as2"
    try:
        with Daemon(data, extra=extra) as daemon:
            daemon.start()
            # sync MDN: signed + encrypted + compressed
            invoice = make_ubl(lines=1, number="AS2-SYNC-1")
            message = PartnerStation().build(invoice, "as2-sync.xml", sign=True, encrypt=True, compress=True)
            answer = post(url, message)
            assert check_mdn(message, answer.headers, answer.content) == ("processed", None)
            wait_for(lambda: len(daemon.acks_for("as2-sync.xml", "acme")) == 1, 60, "ack in out/", daemon)
            ack = read_ack(daemon.acks_for("as2-sync.xml", "acme")[0])
            assert ack["status"] == "Ok", ack
            ack_name = daemon.acks_for("as2-sync.xml", "acme")[0].name
            # … and the same acknowledgement back by AS2 (signed, encrypted, MDN checked by the sink)
            wait_for(lambda: any(d[2] == ack_name for d in receiver.documents), 60, "ack by AS2", daemon)
            status, content, _ = next(d for d in receiver.documents if d[2] == ack_name)
            assert status == "processed"
            assert content == daemon.acks_for("as2-sync.xml", "acme")[0].read_bytes()
            # async MDN: POSTed to the configured mdn_url through the outbox
            station = PartnerStation(mdn_url="http://acme.example/not-used")
            invoice = make_ubl(lines=1, number="AS2-ASYNC-1")
            later = station.build(
                invoice, "as2-async.xml", sign=True, encrypt=True, compress=True, mdn="ASYNC"
            )
            answer = post(url, later)
            assert answer.status_code == 200 and b"received" in answer.content
            wait_for(lambda: any(r.path == "/mdn" for r in receiver.received), 60, "async MDN", daemon)
            mdn = next(r for r in receiver.received if r.path == "/mdn")
            assert check_mdn(later, mdn.headers, mdn.body) == ("processed", None)
            # an error disposition through the daemon: a stranger
            stranger = PartnerStation(as2_name="NOBODY").build(b"x", "x.xml", sign=True, encrypt=True,
                                                               compress=False)  # fmt: skip
            answer = post(url, stranger)
            assert mdn_fields(answer.content, answer.headers)["Disposition"].endswith(
                "unknown-trading-partner"
            )
            wait_for(lambda: len(daemon.acks_for("as2-async.xml", "acme")) == 1, 60, "second ack", daemon)
            assert [r[1] for r in as2_rows(data)] == ["processed", "processed", "unknown-trading-partner"]
            assert daemon.log_has(message.message_id)  # structlog lines carry the Message-ID
    finally:
        receiver.close()


def test_sigkill_right_after_the_mdn_loses_nothing(tmp_path: Path) -> None:
    """Each message that got a "processed" MDN is a flow that gets its acknowledgement after a restart."""
    port = free_port()
    data = tmp_path / "data"
    write_gateway_keys(data)
    url = f"http://127.0.0.1:{port}/as2"
    names = [f"kill-{i}.xml" for i in range(4)]
    with Daemon(data, extra=partner_toml() + as2_toml(port)) as daemon:
        daemon.start()
        processed = []
        for i, name in enumerate(names):
            message = PartnerStation().build(make_ubl(lines=1, number=f"K-{i}"), name, sign=True, encrypt=True,
                                             compress=False)  # fmt: skip
            answer = post(url, message)
            assert check_mdn(message, answer.headers, answer.content) == ("processed", None)
            processed.append(message.message_id)
        daemon.kill()  # SIGKILL at once after the last MDN: nothing may be lost
        assert {row[0] for row in as2_rows(data) if row[1] == "processed"} == set(processed)
        assert sorted(f[1] for f in daemon.flows()) == sorted(names)
        daemon.start()
        for name in names:
            wait_for(lambda n=name: len(daemon.acks_for(n, "acme")) == 1, 90, f"ack of {name}", daemon)
        # the partner resends a message whose MDN it missed: a duplicate, not a second flow
        answer = post(url, message)
        assert mdn_fields(answer.content, answer.headers)["Disposition"].endswith("duplicate-document")
        assert len(daemon.flows()) == len(names)
        daemon.stop()
