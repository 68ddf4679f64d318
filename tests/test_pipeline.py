"""The pipeline with real parts in-process: retries with backoff, quarantine, replay, crash detection."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.cli import main as cli_main
from gateway.config import DeliveryConfig, GatewayConfig, WorkersConfig
from gateway.outbound.base import SinkFactory, SinkResolver, UnknownSinkError
from gateway.outbound.local_dir import FolderDeliverySink
from gateway.runtime.delivery import DeliveryWorker
from gateway.runtime.intake import Intake
from gateway.runtime.pipeline import Pipeline
from gateway.runtime.routing import Router
from gateway.statemachine import FlowState
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.directory import upsert_entries
from gateway.store.models import OutboxRow
from gateway.store.outbox import Outbox
from gateway.store.queries import get_flow_detail
from gateway.telemetry.metrics import Metrics
from gateway.transforms.identify import Identifier
from gateway.transforms.route import Recipient, Service
from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import ValidationConfig
from gateway.validation.rulepacks import RulePackRegistry

from daemon_harness import read_ack
from invoice_factory import BUYER_SIRET, luhn_complete, make_cii, make_ubl


@pytest.fixture(scope="module")
def engine() -> ValidationEngine:
    return ValidationEngine(ValidationConfig(), RulePackRegistry(None))


class World:
    def __init__(
        self, tmp: Path, engine: ValidationEngine, max_attempts: int = 3, max_crashes: int = 2
    ) -> None:
        for d in ("claims", "blobs", "tmp", "in", "out"):
            (tmp / d).mkdir()
        self.tmp = tmp
        self.config = GatewayConfig(workers=WorkersConfig(max_attempts=max_attempts, max_crashes=max_crashes,
                                                          backoff_base_seconds=60))  # fmt: skip
        self.store = Store(f"sqlite:///{tmp / 'db.sqlite'}")
        self.store.migrate()
        self.blobs = BlobStore(tmp / "blobs", tmp / "tmp")
        self.metrics = Metrics()
        self.intake = Intake(self.store, self.blobs, tmp / "claims", 10_000_000, "t", self.metrics)
        self.pipeline = Pipeline(self.config, self.store, self.blobs, Identifier(), engine, self.metrics, "w1",
                                 router=Router(self.config, self.blobs))  # fmt: skip
        self.sinks = SinkResolver()
        self.sinks.register_prefix(
            "partner:",
            lambda p: FolderDeliverySink(tmp / "out" if p == "acme" else tmp / "partners" / p / "out"),
        )
        self.outbox = Outbox(self.store, self.blobs)
        self.delivery = DeliveryWorker(
            self.store, self.outbox, self.sinks, DeliveryConfig(), self.metrics, "d1"
        )

    def drop(self, name: str, data: bytes) -> str:
        (self.tmp / "in" / name).write_bytes(data)
        taken = self.intake.take("acme", self.tmp / "in" / name)
        assert taken is not None
        return taken.flow_id

    def run_once(self, now: datetime | None = None) -> FlowState | None:
        """One flow through the pipeline, then every due outbox row through its sink."""
        flow = self.store.claim_next("w1", 300, now=now)
        state = None if flow is None else self.pipeline.process(flow)
        self.deliver(now)
        return state

    def deliver(self, now: datetime | None = None) -> int:
        sent = 0
        while self.delivery.run_once(now=now):
            sent += 1
        return sent

    def acks(self) -> list[Path]:
        return sorted((self.tmp / "out").glob("*.ack.xml"))


def test_transient_failures_back_off_then_quarantine_then_replay(
    tmp_path: Path, engine: ValidationEngine
) -> None:
    world = World(tmp_path, engine, max_attempts=3, max_crashes=2)
    data = make_ubl(lines=1, number="Q-1")
    flow_id = world.drop("q.xml", data)
    blob = world.blobs.path_for(get_flow_detail(world.store, flow_id)["flow"]["sha256"])
    blob.rename(blob.with_suffix(".away"))  # the storage fails under the flow

    assert world.run_once() is FlowState.FAILED
    flow = get_flow_detail(world.store, flow_id)["flow"]
    assert flow["attempts"] == 1 and flow["checkpoint"] == "RECEIVED"
    assert flow["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=50)  # backoff base 60 s
    assert world.run_once() is None  # not before its time
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert world.run_once(now=later) is FlowState.FAILED
    assert world.run_once(now=later + timedelta(minutes=10)) is FlowState.QUARANTINED
    assert len(world.acks()) == 1
    ack = read_ack(world.acks()[0])
    assert ack["reasons"] == ["ERR_INTERNE"] and ack["status"] == "Error"
    events = [(e["from_state"], e["to_state"]) for e in get_flow_detail(world.store, flow_id)["events"]]
    assert events[-1] == ("RECEIVED", "QUARANTINED") and events.count(("FAILED", "RECEIVED")) == 2
    assert "failed 3 times" in get_flow_detail(world.store, flow_id)["flow"]["reason_message"]

    # the operator repairs the storage and replays: the same acknowledgement file is rewritten
    blob.with_suffix(".away").rename(blob)
    world.store.quarantine_or_replay(flow_id, FlowState.RECEIVED, "operator", "replay")
    assert world.run_once() is FlowState.ACKNOWLEDGED
    assert len(world.acks()) == 1 and read_ack(world.acks()[0])["status"] == "Ok"


def test_a_flow_that_keeps_killing_workers_is_quarantined(tmp_path: Path, engine: ValidationEngine) -> None:
    world = World(tmp_path, engine, max_crashes=2)
    flow_id = world.drop("poison.xml", make_ubl(lines=1, number="P-1"))
    for hours_ago in (2, 1):  # two workers took it and died without a word (their leases expired)
        assert (
            world.store.claim_next("dead", 60, now=datetime.now(UTC) - timedelta(hours=hours_ago)) is not None
        )
    assert world.run_once() is FlowState.QUARANTINED
    detail = get_flow_detail(world.store, flow_id)
    assert "without finishing" in detail["flow"]["reason_message"]
    assert read_ack(world.acks()[0])["reasons"] == ["ERR_INTERNE"]


def test_partially_accepted_zip_batch(tmp_path: Path, engine: ValidationEngine) -> None:
    import io
    import zipfile

    world = World(tmp_path, engine)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("good.xml", make_ubl(lines=1, number="Z-1"))
        zf.writestr("broken.xml", b"<Invoice")
    world.drop("batch.zip", buffer.getvalue())
    assert world.run_once() is FlowState.ACKNOWLEDGED
    ack = read_ack(world.acks()[0])
    assert ack["status"] == "Ok" and ack["flow_status"] == "IN_INTEGRE_PARTIEL"
    assert ack["reasons"] == ["IRR_SYNTAX"]


# -- routing and delivery ---------------------------------------------------------------------------
UNKNOWN_SIRET = luhn_complete(luhn_complete("55203253") + "0001")


def _load_directory(world: World, syntax: str = "same", partner: str = "buyer") -> None:
    with world.store.transaction() as conn:
        upsert_entries(
            conn,
            [Recipient(siren=BUYER_SIRET[:9], siret=BUYER_SIRET, name="Commune de Test", partner=partner,
                       syntax=syntax, service_code_required=True, services=(Service("SERV-01", "Accueil"),))],
            source="csv",
            now=datetime.now(UTC),
        )  # fmt: skip


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _outbox_rows(world: World, kind: str) -> list[dict[str, object]]:
    with world.store.reader() as conn:
        rows = conn.execute(select(OutboxRow.__table__).where(OutboxRow.kind == kind).order_by(OutboxRow.id))
        return [dict(r._mapping) for r in rows]


def test_route_delivers_known_recipients_and_rejects_the_others(
    tmp_path: Path, engine: ValidationEngine
) -> None:
    world = World(tmp_path, engine)
    _load_directory(world, syntax="cii")
    flow_id = world.drop("batch.zip", _zip({
        "known.xml": make_ubl(lines=1, number="R-1"),
        "unknown.xml": make_ubl(lines=1, number="R-2", buyer_siret=UNKNOWN_SIRET),
        "no-service.xml": make_ubl(lines=1, number="R-3", service_code=""),
    }))  # fmt: skip
    flow = world.store.claim_next("w1", 300)
    assert flow is not None and world.pipeline.process(flow) is FlowState.ROUTED
    # nothing is written before the delivery workers run: the ack and the delivery are outbox rows
    assert world.acks() == [] and not (tmp_path / "partners").exists()
    assert world.deliver() == 2
    ack = read_ack(world.acks()[0])
    assert ack["status"] == "Ok" and ack["flow_status"] == "IN_INTEGRE_PARTIEL"
    assert sorted(ack["reasons"]) == ["DEST_INC", "REJ_CONT_B2G"]
    delivered = sorted((tmp_path / "partners" / "buyer" / "out").iterdir())
    assert [p.name for p in delivered] == [f"{flow_id}_001_R-1.xml"]
    assert b"CrossIndustryInvoice" in delivered[0].read_bytes()  # in the recipient's syntax (cii)
    detail = get_flow_detail(world.store, flow_id)
    assert detail["flow"]["state"] == "DELIVERED"
    assert detail["flow"]["invoices_accepted"] == 1 and detail["flow"]["invoices_rejected"] == 2
    by_number = {inv["number"]: inv for inv in detail["invoices"]}
    assert by_number["R-1"]["status"] == "accepted"
    assert by_number["R-2"]["reason_code"] == "DEST_INC"
    assert by_number["R-3"]["reason_code"] == "REJ_CONT_B2G" and "BT-10" in by_number["R-3"]["reason_message"]
    events = [(e["from_state"], e["to_state"]) for e in detail["events"]]
    assert events[-2:] == [("VALIDATED", "ROUTED"), ("ROUTED", "DELIVERED")]
    assert world.metrics.deliveries.labels("partner:buyer", "ok")._value.get() == 1


def test_same_invoice_again_is_a_duplicate_and_nothing_is_delivered(
    tmp_path: Path, engine: ValidationEngine
) -> None:
    world = World(tmp_path, engine)
    _load_directory(world)
    first = world.drop("first.xml", make_ubl(lines=1, number="D-1"))
    assert world.run_once() is FlowState.ROUTED
    assert get_flow_detail(world.store, first)["flow"]["state"] == "DELIVERED"
    second = world.drop("second.xml", make_ubl(lines=2, number="D-1"))  # other content, same number
    assert world.run_once() is FlowState.REJECTED
    ack = read_ack(_ack_of(world, second))
    assert ack["status"] == "Error" and ack["reasons"] == ["DOUBLON"]
    assert len(_outbox_rows(world, "delivery")) == 1


def _ack_of(world: World, flow_id: str) -> Path:
    name = get_flow_detail(world.store, flow_id)["flow"]["ack_name"]
    return world.tmp / "out" / name


def test_empty_directory_keeps_validate_and_acknowledge(tmp_path: Path, engine: ValidationEngine) -> None:
    world = World(tmp_path, engine)
    world.drop("a.xml", make_ubl(lines=1, number="E-1", buyer_siret=UNKNOWN_SIRET))
    assert world.run_once() is FlowState.ACKNOWLEDGED
    assert read_ack(world.acks()[0])["status"] == "Ok"
    assert _outbox_rows(world, "delivery") == []


def test_dead_delivery_makes_the_flow_undelivered_and_resend_delivers_it(
    tmp_path: Path, engine: ValidationEngine
) -> None:
    world = World(tmp_path, engine)
    _load_directory(world, partner="nowhere")  # a partner the sink resolver refuses: permanent
    world.sinks.register_prefix("partner:", _picky_factory(tmp_path))
    flow_id = world.drop("a.xml", make_ubl(lines=1, number="U-1"))
    assert world.run_once() is FlowState.ROUTED
    assert get_flow_detail(world.store, flow_id)["flow"]["state"] == "UNDELIVERED"
    assert read_ack(world.acks()[0])["status"] == "Ok"  # the sender's ack did not wait
    (row,) = _outbox_rows(world, "delivery")
    assert row["state"] == "dead" and "nowhere" in str(row["last_error"])
    assert world.metrics.deliveries.labels("partner:nowhere", "dead")._value.get() == 1
    # the operator fixes the configuration and resends
    world.sinks = SinkResolver()
    world.sinks.register_prefix("partner:", lambda p: FolderDeliverySink(tmp_path / "partners" / p / "out"))
    world.delivery.sinks = world.sinks
    data_dir = tmp_path / "dd"
    data_dir.mkdir()
    (data_dir / "gateway.toml").write_text(f'[store]\nurl = "{world.store.url}"\n')
    assert cli_main(["resend", str(row["invoice_id"]), "--data-dir", str(data_dir)]) == 0
    assert cli_main(["resend", str(row["invoice_id"]), "--data-dir", str(data_dir)]) == 1  # pending already
    assert world.deliver() == 1
    assert get_flow_detail(world.store, flow_id)["flow"]["state"] == "DELIVERED"
    assert [p.name for p in (tmp_path / "partners" / "nowhere" / "out").iterdir()] == [row["remote_name"]]


def _picky_factory(tmp: Path) -> SinkFactory:
    def factory(partner: str) -> FolderDeliverySink:
        if partner != "acme":
            raise UnknownSinkError(f"no partner {partner!r} in the configuration")
        return FolderDeliverySink(tmp / "out")

    return factory


def test_unwritable_out_folder_delays_the_ack_which_arrives_once(
    tmp_path: Path, engine: ValidationEngine
) -> None:
    world = World(tmp_path, engine)
    out = tmp_path / "out"
    out.rmdir()
    out.write_bytes(b"")  # out/ is broken (a file): every write fails, whoever runs the test
    world.drop("a.xml", make_ubl(lines=1, number="W-1"))
    assert world.run_once() is FlowState.ACKNOWLEDGED  # the flow is decided; its ack waits
    (row,) = _outbox_rows(world, "ack")
    assert row["state"] == "pending" and row["attempts"] == 1
    later = datetime.now(UTC)
    for _ in range(20):  # far more tries than max_attempts: an ack never goes dead
        later += timedelta(hours=1)
        assert world.deliver(later) == 1
    assert _outbox_rows(world, "ack")[0]["state"] == "pending"
    out.unlink()
    out.mkdir()
    assert world.deliver(later + timedelta(hours=1)) == 1
    assert len(world.acks()) == 1 and read_ack(world.acks()[0])["status"] == "Ok"
    assert world.deliver(later + timedelta(hours=2)) == 0
    assert world.metrics.acks_written.labels("Ok")._value.get() == 1


def test_replay_refuses_a_flow_that_is_not_quarantined(tmp_path: Path, engine: ValidationEngine) -> None:
    world = World(tmp_path, engine)
    flow_id = world.drop("a.xml", make_ubl(lines=1, number="G-1"))
    assert world.run_once() is FlowState.ACKNOWLEDGED
    assert not world.store.quarantine_or_replay(flow_id, FlowState.RECEIVED, "operator", "x",
                                                expected=FlowState.QUARANTINED)  # fmt: skip
    assert get_flow_detail(world.store, flow_id)["flow"]["state"] == "ACKNOWLEDGED"
    claimed = world.drop("b.xml", make_ubl(lines=1, number="G-2"))
    assert world.store.claim_next("w9", 300) is not None  # a worker holds it
    assert not world.store.quarantine_or_replay(claimed, FlowState.QUARANTINED, "operator", "x")


def test_attachments_are_checked_before_delivery(tmp_path: Path, engine: ValidationEngine) -> None:
    from attachment_factory import PDF_BYTES, Spec, with_attachments

    world = World(tmp_path, engine)
    _load_directory(world)
    good = with_attachments(make_ubl(lines=1, number="A-1"), [Spec("PJ-1", "annexe.pdf", PDF_BYTES)])
    empty = with_attachments(make_ubl(lines=1, number="A-2"), [Spec("PJ-2", "vide.pdf", b"")])
    flow_id = world.drop("pj.zip", _zip({"good.xml": good, "empty.xml": empty}))
    assert world.run_once() is FlowState.ROUTED
    ack = read_ack(world.acks()[0])
    assert ack["flow_status"] == "IN_INTEGRE_PARTIEL" and ack["reasons"] == ["IRR_VID_PJ"]
    (delivered,) = (tmp_path / "partners" / "buyer" / "out").iterdir()
    assert delivered.name == f"{flow_id}_001_A-1.xml" and b"annexe.pdf" in delivered.read_bytes()


@pytest.mark.parametrize(
    ("syntax", "expected"), [("same", b"%PDF-"), ("ubl", b"<Invoice"), ("cii", b"<rsm:")]
)
def test_facturx_pdf_delivered_as_the_pdf_or_as_asked(
    tmp_path: Path, engine: ValidationEngine, syntax: str, expected: bytes
) -> None:
    from attachment_factory import facturx_pdf

    world = World(tmp_path, engine)
    _load_directory(world, syntax=syntax)
    pdf = facturx_pdf(make_cii(lines=1, number="FX-1"))
    flow_id = world.drop("fx.pdf", pdf)
    assert world.run_once() is FlowState.ROUTED
    (delivered,) = (tmp_path / "partners" / "buyer" / "out").iterdir()
    data = delivered.read_bytes()
    assert expected in data[:300]
    if syntax == "same":
        assert delivered.name == f"{flow_id}_001_FX-1.pdf" and data == pdf
        (row,) = _outbox_rows(world, "delivery")
        assert row["payload"] is None  # sent from the blob store, not copied into the outbox
