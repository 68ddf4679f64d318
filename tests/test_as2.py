"""AS2 listener (the real As2Service over HTTP) with pyas2lib as the partner: sync MDNs and their
signatures / MICs, every error disposition, async MDNs through the real outbox and delivery worker,
acknowledgements sent back by AS2, and `gateway as2 keygen`."""

from __future__ import annotations

import base64
import hashlib
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.as2.receiver import As2Receiver
from gateway.as2.service import As2Service
from gateway.as2.sink import As2Sink
from gateway.as2.station import As2Station
from gateway.cli import main
from gateway.config import DeliveryConfig, parse_config
from gateway.outbound.base import SinkResolver
from gateway.runtime.delivery import DeliveryWorker
from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.models import As2MessageRow, FlowRow, OutboxRow
from gateway.store.outbox import Outbox
from gateway.telemetry.metrics import Metrics

from as2_partner import (
    GATEWAY_ID,
    PARTNER_ID,
    PartnerStation,
    Receiver,
    check_mdn,
    keys,
    mdn_fields,
    post,
    write_gateway_keys,
)

INVOICE = b'<?xml version="1.0"?>\n<Invoice>\n  <ID>F-2026-001</ID>\n</Invoice>\n'


@dataclass
class Setup:
    url: str
    store: Store
    blobs: BlobStore
    metrics: Metrics
    station: As2Station
    service: As2Service
    receiver: As2Receiver

    def rows(self) -> list[Any]:
        with self.store.reader() as conn:
            return list(conn.execute(select(As2MessageRow).order_by(As2MessageRow.id)))

    def flows(self) -> list[Any]:
        with self.store.reader() as conn:
            return list(conn.execute(select(FlowRow.id, FlowRow.filename, FlowRow.source, FlowRow.sha256)))

    def count(self, partner: str, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "gateway_as2_messages_total", {"partner": partner, "result": result}
        )
        return value or 0.0


def make_setup(root: Path, store_url: str, **partner: Any) -> Setup:
    write_gateway_keys(root)
    settings: dict[str, Any] = {"as2_id": PARTNER_ID, "certificate": "as2/acme.pem", **partner}
    config = parse_config({
        "as2": {"enabled": True, "port": 0, "as2_id": GATEWAY_ID},
        "partners": {"acme": {"as2": settings}, "demo": {}},
    })  # fmt: skip
    store = Store(store_url)
    store.migrate()
    blobs = BlobStore(root / "blobs", root / "tmp")
    (root / "tmp").mkdir(exist_ok=True)
    metrics = Metrics()
    intake = Intake(store, blobs, root / "claims", 10_000_000, "test-worker", metrics)
    (root / "claims").mkdir(exist_ok=True)
    station = As2Station(config.as2, config, root)
    receiver = As2Receiver(station, intake, store, metrics)
    service = As2Service(receiver, config.as2)
    service.start()
    return Setup(f"http://127.0.0.1:{service.port}/as2", store, blobs, metrics, station, service, receiver)


@pytest.fixture
def as2(tmp_path: Path, store_url: str) -> Iterator[Setup]:
    setup = make_setup(tmp_path, store_url)
    yield setup
    setup.service.stop()
    setup.store.close()


@pytest.fixture
def as2_lax(tmp_path: Path) -> Iterator[Setup]:
    """A partner allowed to send unsigned, unencrypted messages (SQLite)."""
    setup = make_setup(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}", sign=False, encrypt=False)
    yield setup
    setup.service.stop()
    setup.store.close()


def test_signed_encrypted_compressed_sync_mdn(as2: Setup) -> None:
    message = PartnerStation().build(INVOICE, "F-2026-001.xml", sign=True, encrypt=True, compress=True)
    answer = post(as2.url, message)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("multipart/signed")  # our MDN is signed
    assert check_mdn(message, answer.headers, answer.content) == ("processed", None)  # signature and MIC
    fields = mdn_fields(answer.content, answer.headers)
    assert fields["Received-content-MIC"] == f"{message.mic.decode()}, sha256"
    assert fields["Original-Message-ID"] == f"<{message.message_id}>"
    [flow] = as2.flows()
    assert flow.filename == "F-2026-001.xml" and flow.source == "as2"
    assert as2.blobs.read(flow.sha256) == INVOICE  # the document exactly as the partner sent it
    [row] = as2.rows()
    assert (row.result, row.flow_id, row.message_id) == ("processed", flow.id, message.message_id)
    assert row.signed and row.encrypted and row.compressed and row.mdn_mode == "sync"
    assert as2.count("acme", "processed") == 1


def test_signed_only(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", encrypt=False)
    try:
        message = PartnerStation().build(INVOICE, "signed.xml", sign=True, encrypt=False, compress=False)
        answer = post(setup.url, message)
        assert check_mdn(message, answer.headers, answer.content) == ("processed", None)
        [row] = setup.rows()
        assert row.signed and not row.encrypted and row.result == "processed"
        assert [f.filename for f in setup.flows()] == ["signed.xml"]
    finally:
        setup.service.stop()
        setup.store.close()


def test_plain_message_gets_a_signed_mdn_with_the_content_mic(as2_lax: Setup) -> None:
    message = PartnerStation().build(INVOICE, "plain.xml", sign=False, encrypt=False, compress=False)
    answer = post(as2_lax.url, message)
    assert check_mdn(message, answer.headers, answer.content) == ("processed", None)  # our signature
    mic = base64.b64encode(hashlib.sha256(message.content).digest()).decode()
    assert mdn_fields(answer.content, answer.headers)["Received-content-MIC"] == f"{mic}, sha256"  # §7.3.1
    [flow] = as2_lax.flows()
    assert as2_lax.blobs.read(flow.sha256) == INVOICE


def test_message_without_mdn_request_gets_an_empty_200(as2: Setup) -> None:
    message = PartnerStation().build(INVOICE, "no-mdn.xml", sign=True, encrypt=True, compress=False, mdn=None)
    answer = post(as2.url, message)
    assert answer.status_code == 200 and answer.content == b""
    assert len(as2.flows()) == 1 and as2.rows()[0].mdn_mode == "none"


def _error(setup: Setup, message: Any, body: bytes | None = None) -> tuple[dict[str, str], str]:
    answer = post(setup.url, message, body=body)
    assert answer.status_code == 200
    status, detail = check_mdn(message, answer.headers, answer.content)  # still signed by us
    fields = mdn_fields(answer.content, answer.headers)
    assert "Received-content-MIC" not in fields  # no MIC for what was not taken
    return fields, f"{status}: {detail}"


def test_unknown_partner_as2_id(as2: Setup) -> None:
    message = PartnerStation(as2_name="STRANGER").build(
        INVOICE, "x.xml", sign=True, encrypt=True, compress=False
    )
    fields, _ = _error(as2, message)
    assert fields["Disposition"].endswith("processed/Error: unknown-trading-partner")
    assert as2.flows() == []
    [row] = as2.rows()
    assert (row.result, row.partner, row.as2_from) == ("unknown-trading-partner", None, "STRANGER")
    assert as2.count("unknown", "unknown-trading-partner") == 1


def test_unknown_recipient_as2_id(as2: Setup) -> None:
    station = PartnerStation()
    message = Any
    from pyas2lib import Message

    message = Message(
        station.organization(), station.gateway(sign=True, encrypt=True, compress=False, to="OTHER")
    )
    message.build(INVOICE, filename="x.xml")
    answer = post(as2.url, message)
    assert mdn_fields(answer.content, answer.headers)["Disposition"].endswith("unknown-trading-partner")
    assert as2.flows() == []


def test_bad_signature(as2: Setup) -> None:
    message = PartnerStation(sign_with="impostor").build(
        INVOICE, "x.xml", sign=True, encrypt=True, compress=False
    )
    fields, _ = _error(as2, message)
    assert fields["Disposition"].endswith("processed/Error: authentication-failed")
    assert as2.flows() == [] and as2.rows()[0].result == "authentication-failed"


def test_undecryptable_content(as2: Setup) -> None:
    message = PartnerStation(encrypt_to="someone-else").build(INVOICE, "x.xml", sign=True, encrypt=True,
                                                              compress=False)  # fmt: skip
    fields, _ = _error(as2, message)
    assert fields["Disposition"].endswith("processed/Error: decryption-failed")
    assert as2.flows() == [] and as2.rows()[0].result == "decryption-failed"
    assert as2.count("acme", "decryption-failed") == 1


def test_mic_mismatch(tmp_path: Path) -> None:
    """The signed content changed on the way: the signature's message digest no longer matches."""
    setup = make_setup(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", encrypt=False)
    try:
        message = PartnerStation().build(INVOICE, "x.xml", sign=True, encrypt=False, compress=False)
        tampered = message.content.replace(b"F-2026-001", b"F-2026-666")
        assert tampered != message.content
        fields, _ = _error(setup, message, body=tampered)
        assert fields["Disposition"].endswith("processed/Error: integrity-check-failed")
        assert setup.flows() == [] and setup.rows()[0].result == "integrity-check-failed"
    finally:
        setup.service.stop()
        setup.store.close()


def test_duplicate_message_id(as2: Setup) -> None:
    message = PartnerStation().build(INVOICE, "dup.xml", sign=True, encrypt=True, compress=False)
    first = post(as2.url, message)
    assert check_mdn(message, first.headers, first.content) == ("processed", None)
    second = post(as2.url, message)
    fields = mdn_fields(second.content, second.headers)
    assert fields["Disposition"].endswith("processed/Warning: duplicate-document")
    assert len(as2.flows()) == 1
    assert [r.result for r in as2.rows()] == ["processed", "duplicate-document"]


def test_insufficient_security(as2: Setup) -> None:
    """acme must sign and encrypt, with AES: an unsigned message, then a 3DES one, are refused."""
    unsigned = PartnerStation().build(INVOICE, "x.xml", sign=False, encrypt=True, compress=False)
    answer = post(as2.url, unsigned)
    assert mdn_fields(answer.content, answer.headers)["Disposition"].endswith("insufficient-message-security")
    weak = PartnerStation().build(INVOICE, "y.xml", sign=True, encrypt=True, compress=False,
                                  enc_alg="tripledes_192_cbc")  # fmt: skip
    answer = post(as2.url, weak)
    assert mdn_fields(answer.content, answer.headers)["Disposition"].endswith("insufficient-message-security")
    assert as2.flows() == []
    assert [r.result for r in as2.rows()] == ["insufficient-message-security"] * 2


def test_missing_headers_and_size_limit(as2: Setup) -> None:
    assert httpx.post(as2.url, content=b"x", timeout=10).status_code == 400
    assert httpx.get(as2.url, timeout=10).status_code == 200
    assert as2.flows() == []


def _deliver_all(setup: Setup, sinks: SinkResolver) -> None:
    worker = DeliveryWorker(setup.store, Outbox(setup.store, setup.blobs), sinks,
                            DeliveryConfig(backoff_base_seconds=0.01), setup.metrics, "test-delivery")  # fmt: skip
    for _ in range(20):
        if not worker.run_once():
            return


def test_async_mdn_through_the_outbox(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        setup = make_setup(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", mdn_mode="async",
                           mdn_url=f"{receiver.url}/mdn")  # fmt: skip
        sinks = SinkResolver()
        sinks.register_prefix("as2:", lambda p: As2Sink(setup.station, setup.station.by_partner[p], 10))
        station = PartnerStation(mdn_url="http://acme.example/ignored")  # we post to the configured URL
        message = station.build(INVOICE, "async.xml", sign=True, encrypt=True, compress=True, mdn="ASYNC")
        answer = post(setup.url, message)
        assert answer.status_code == 200 and "multipart" not in answer.headers.get("content-type", "")
        [flow] = setup.flows()  # durable before the MDN exists anywhere but in the outbox
        with setup.store.reader() as conn:
            [row] = list(conn.execute(select(OutboxRow.kind, OutboxRow.sink, OutboxRow.state)))
        assert tuple(row) == ("mdn", "as2:acme", "pending")
        _deliver_all(setup, sinks)
        [got] = receiver.received
        assert got.path == "/mdn"
        assert check_mdn(message, got.headers, got.body) == ("processed", None)
        assert setup.rows()[0].mdn_mode == "async" and setup.rows()[0].flow_id == flow.id
        setup.service.stop()
        setup.store.close()
    finally:
        receiver.close()


def test_async_mdn_retried_while_the_partner_is_down(tmp_path: Path) -> None:
    receiver = Receiver(status=503)
    try:
        setup = make_setup(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", mdn_mode="async",
                           mdn_url=f"{receiver.url}/mdn")  # fmt: skip
        sinks = SinkResolver()
        sinks.register_prefix("as2:", lambda p: As2Sink(setup.station, setup.station.by_partner[p], 10))
        message = PartnerStation(mdn_url="http://x").build(INVOICE, "a.xml", sign=True, encrypt=True,
                                                           compress=False, mdn="ASYNC")  # fmt: skip
        post(setup.url, message)
        worker = DeliveryWorker(setup.store, Outbox(setup.store, setup.blobs), sinks, DeliveryConfig(),
                                setup.metrics, "test-delivery")  # fmt: skip
        assert worker.run_once()
        with setup.store.reader() as conn:
            state, attempts, error = conn.execute(
                select(OutboxRow.state, OutboxRow.attempts, OutboxRow.last_error)
            ).one()
        assert (state, attempts) == ("pending", 1) and "503" in error  # retried later, not dead
        setup.service.stop()
        setup.store.close()
    finally:
        receiver.close()


def test_ack_sent_back_by_as2(tmp_path: Path) -> None:
    """The sink sends an acknowledgement as a signed, encrypted AS2 message and checks the partner's MDN."""
    receiver = Receiver()
    try:
        setup = make_setup(
            tmp_path, f"sqlite:///{tmp_path / 'g.db'}", deliver_acks=True, url=f"{receiver.url}/as2"
        )
        sink = As2Sink(setup.station, setup.station.by_partner["acme"], 10)
        from gateway.store.outbox import OutboxItem

        item = OutboxItem(7, "ack", "as2:acme", "F-1.xml.20260101.ack.xml", None, "flow-1", None, {}, 1)
        receipt = sink.send(item, b"<Ack>ok</Ack>")
        assert "MDN processed" in receipt
        [(status, content, filename)] = receiver.documents
        assert status == "processed" and content == b"<Ack>ok</Ack>" and filename == item.remote_name
        again = sink.send(item, b"<Ack>ok</Ack>")  # a re-send carries the same Message-ID
        assert again == receipt
        sink.close()
        setup.service.stop()
        setup.store.close()
    finally:
        receiver.close()


def test_keygen_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["as2", "keygen", "--data-dir", str(tmp_path), "--as2-id", "GW", "--bits", "2048"]) == 0
    key, cert = tmp_path / "as2" / "key.pem", tmp_path / "as2" / "cert.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(cert.stat().st_mode) == 0o600
    assert "CN=GW" in capsys.readouterr().out
    assert main(["as2", "keygen", "--data-dir", str(tmp_path)]) == 1  # never overwrites by accident
    from pyas2lib import Organization

    org = Organization(as2_name="GW", sign_key=key.read_bytes() + cert.read_bytes())  # pyas2lib loads it
    assert org.sign_key is not None
    assert keys("gateway").cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")


def test_take_failure_answers_an_error_and_takes_nothing(as2: Setup, tmp_path: Path) -> None:
    """The intake cannot write (here: its claims directory is a file): no "processed" MDN, the partner
    resends later, and the Message-ID is not marked as taken."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    intake = as2.receiver.intake
    good_claims = intake.claims_dir
    intake.claims_dir = blocker
    message = PartnerStation().build(INVOICE, "x.xml", sign=True, encrypt=True, compress=False)
    answer = post(as2.url, message)
    fields = mdn_fields(answer.content, answer.headers)
    assert fields["Disposition"].endswith("processed/Error: unexpected-processing-error")
    assert as2.flows() == [] and as2.rows()[0].result == "unexpected-processing-error"
    intake.claims_dir = good_claims
    again = post(as2.url, message)  # the resend is taken: the failure did not mark the Message-ID
    assert check_mdn(message, again.headers, again.content) == ("processed", None)
    assert len(as2.flows()) == 1


def test_async_error_mdn_goes_through_the_outbox(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        setup = make_setup(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", mdn_mode="async",
                           mdn_url=f"{receiver.url}/mdn")  # fmt: skip
        sinks = SinkResolver()
        sinks.register_prefix("as2:", lambda p: As2Sink(setup.station, setup.station.by_partner[p], 10))
        message = PartnerStation(encrypt_to="someone-else", mdn_url="http://x").build(
            INVOICE, "a.xml", sign=True, encrypt=True, compress=False, mdn="ASYNC"
        )
        assert post(setup.url, message).status_code == 200
        _deliver_all(setup, sinks)
        [got] = receiver.received
        assert mdn_fields(got.body, got.headers)["Disposition"].endswith("processed/Error: decryption-failed")
        assert check_mdn(message, got.headers, got.body)[0].startswith("processed/Error")  # signed by us
        assert setup.flows() == []
        setup.service.stop()
        setup.store.close()
    finally:
        receiver.close()
