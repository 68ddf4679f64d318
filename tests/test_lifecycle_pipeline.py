"""Lifecycle flows through the real pipeline (issue 18): status CSV and CDAR files dropped by the recipient
are identified, judged (CDAR: official XSD + BR-FR-CDV), applied to the store with the flow's state change,
and acknowledged line by line; every accepted status yields CDAR messages that pass the same rules."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from gateway.config import GatewayConfig, LifecycleConfig
from gateway.outbound.local_dir import FolderSink
from gateway.runtime import lifecycle_flow
from gateway.runtime.intake import Intake
from gateway.runtime.pipeline import Pipeline
from gateway.statemachine import FlowState
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.lifecycle import RecordedStatus, record_status, status_history
from gateway.store.queries import get_flow_detail, get_invoice, list_invoices
from gateway.telemetry.metrics import Metrics
from gateway.transforms.cdar_build import OutgoingStatus, Party, build_cdar
from gateway.transforms.identify import Identifier
from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import ValidationConfig

from daemon_harness import read_ack
from invoice_factory import SELLER_SIRET, make_ubl
from lifecycle_support import CDAR_CORPUS, CdarValidator, cdar_registry

HEADER = "invoice_number;seller_siret;status_code;date;reason_code;reason_text"


class World:
    def __init__(self, tmp: Path) -> None:
        for d in ("claims", "blobs", "tmp", "in", "out", "rules"):
            (tmp / d).mkdir()
        self.tmp = tmp
        self.store = Store(f"sqlite:///{tmp / 'db.sqlite'}")
        self.store.migrate()
        self.blobs = BlobStore(tmp / "blobs", tmp / "tmp")
        self.metrics = Metrics()
        self.engine = ValidationEngine(ValidationConfig(), cdar_registry(tmp / "rules"))
        self.intake = Intake(self.store, self.blobs, tmp / "claims", 10_000_000, "t", self.metrics)
        self.pipeline = Pipeline(GatewayConfig(), self.store, self.blobs, self.sink, Identifier(), self.engine,
                                 self.metrics, "w1")  # fmt: skip
        self.sent: list[tuple[RecordedStatus, dict[str, Any]]] = []

    def sink(self, partner: str) -> FolderSink:
        (self.tmp / "out" / partner).mkdir(exist_ok=True)
        return FolderSink(self.tmp / "out" / partner)

    def drop(self, partner: str, name: str, data: bytes) -> dict[str, Any]:
        """Take the file in, run the pipeline to the end, return the acknowledgement read back."""
        (self.tmp / "in" / name).write_bytes(data)
        taken = self.intake.take(partner, self.tmp / "in" / name)
        assert taken is not None
        flow = self.store.claim_next("w1", 300)
        assert flow is not None and flow.id == taken.flow_id
        state = self.pipeline.process(flow)
        assert state in (FlowState.ACKNOWLEDGED, FlowState.REJECTED)
        (ack_path,) = (self.tmp / "out" / partner).glob(f"*.{taken.flow_id}.ack.xml")
        ack = read_ack(ack_path)
        ack["state"] = state
        ack["flow"] = get_flow_detail(self.store, taken.flow_id)["flow"]
        return ack

    def codes(self, invoice_id: int) -> list[str]:
        with self.store.reader() as conn:
            return [s["code"] for s in status_history(conn, invoice_id)]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    w = World(tmp_path)

    def collect(_conn: Connection, status: RecordedStatus, invoice: dict[str, Any]) -> None:
        w.sent.append((status, invoice))

    # what the composition root will pass once the outbox exists: here the statuses are collected
    monkeypatch.setattr(lifecycle_flow, "validate_step",
                        functools.partial(lifecycle_flow.validate_step, on_recorded=collect))  # fmt: skip
    monkeypatch.setattr(lifecycle_flow, "first_statuses",
                        functools.partial(lifecycle_flow.first_statuses, on_recorded=collect))  # fmt: skip
    return w


def deliver_invoice(world: World, number: str) -> int:
    """An invoice from partner `seller`: the gateway records 200 when it accepts it; 203 as delivery will."""
    ack = world.drop("seller", f"{number}.xml", make_ubl(lines=1, number=number))
    assert ack["status"] == "Ok", ack
    (row,) = list_invoices(world.store, number=number)
    assert row["lifecycle_status"] == "200"
    with world.store.transaction() as conn:
        record_status(conn, row["id"], "203", actor="platform")
    world.sent.clear()
    return int(row["id"])


def buyer_cdar(number: str, code: str, reason: str | None = None, **kw: Any) -> bytes:
    """A CDAR as the buyer's platform sends it (issuer BY, recipient SE)."""
    status = OutgoingStatus(
        status_id=1, code=code, at=datetime(2026, 9, 3, 8, tzinfo=UTC), invoice_number=number,
        invoice_date="2024-01-15", seller=Party(SELLER_SIRET[:9], "Seller"), buyer=Party("987654324", "Buyer"),
        set_by="recipient", type_code="380", reason_code=reason, reason_text=reason and "motif", **kw,
    )  # fmt: skip
    return build_cdar(status, "issuer")


def test_whole_cycle_from_the_recipient(world: World, tmp_path: Path) -> None:
    inv = deliver_invoice(world, "F-100")
    ack = world.drop("buyer", "s1.csv", f"{HEADER}\nF-100;{SELLER_SIRET};204;2026-09-02;;\n".encode())
    assert (ack["status"], ack["state"], ack["reasons"]) == ("Ok", FlowState.ACKNOWLEDGED, [])
    assert ack["flow"]["syntax_code"] == "GW_STATUS_CSV" and ack["flow"]["invoices_accepted"] == 1
    for code, extra in (
        ("205", {}),
        ("211", {}),
        ("212", {"amount": Decimal("1200"), "vat_rate": Decimal("20")}),
    ):
        ack = world.drop("buyer", f"cdar-{code}.xml", buyer_cdar("F-100", code, **extra))
        assert (ack["status"], ack["reasons"]) == ("Ok", []), ack["messages"]
        assert ack["flow"]["syntax_code"] == "GW_CDAR_D22B"
    assert world.codes(inv) == ["200", "203", "204", "205", "211", "212"]
    detail = get_invoice(world.store, inv)
    assert detail is not None and detail["lifecycle_status"] == "212"
    assert detail["lifecycle"][-1]["details"]["amount"] == "1200.00"
    assert world.metrics.registry.get_sample_value("gateway_invoice_statuses_total", {"code": "205"}) == 1.0

    # every accepted status has its CDAR messages for the issuer (and the PPF copy for 212), all valid
    validator = CdarValidator(tmp_path / "rules2")
    assert [s.code for s, _ in world.sent] == ["204", "205", "211", "212"]
    for status, invoice in world.sent:
        messages = lifecycle_flow.cdar_messages(status, invoice)
        assert [m.audience for m in messages] == (["issuer", "ppf"] if status.code == "212" else ["issuer"])
        for message in messages:
            assert validator.fatal(message.payload) == [], (status.code, message.audience)
            assert message.remote_name.startswith(f"CDV-{status.code}_F-100_")

    # after 212 nothing more; an unknown invoice is refused too; each line gets its own detail
    late = f"{HEADER}\nF-100;{SELLER_SIRET};205;2026-09-04;;\nF-404;{SELLER_SIRET};204;2026-09-04;;\n"
    ack = world.drop("buyer", "late.csv", late.encode())
    assert (ack["status"], ack["state"]) == ("Error", FlowState.REJECTED)
    assert ack["reasons"] == ["InvoiceLCStatusError", "InvoiceLCAccessDenied"]
    assert "final status" in ack["messages"][0] and "unknown invoice" in ack["messages"][1]
    assert world.codes(inv) == ["200", "203", "204", "205", "211", "212"]


def test_refusal_then_nothing(world: World) -> None:
    inv = deliver_invoice(world, "F-200")
    ack = world.drop("buyer", "refus.xml", buyer_cdar("F-200", "210", "TX_TVA_ERR"))
    assert ack["status"] == "Ok", ack["messages"]
    assert world.codes(inv) == ["200", "203", "210"]
    (status, invoice) = world.sent[-1]
    assert [m.audience for m in lifecycle_flow.cdar_messages(status, invoice)] == ["issuer", "ppf"]
    assert [r["id"] for r in list_invoices(world.store, status="210")] == [inv]
    ack = world.drop("buyer", "pay.csv", f"{HEADER}\nF-200;{SELLER_SIRET};211;2026-09-05;;\n".encode())
    assert ack["reasons"] == ["InvoiceLCStatusError"] and "Refusée" in ack["messages"][0]
    assert world.codes(inv) == ["200", "203", "210"]


def test_rules_and_reasons_are_enforced(world: World) -> None:
    inv = deliver_invoice(world, "F-300")
    # a CDAR breaking BR-FR-CDV-15 (a refusal without its reason) is refused as a whole, nothing recorded
    no_reason = buyer_cdar("F-300", "210", "TX_TVA_ERR").replace(
        b"<ram:ReasonCode>TX_TVA_ERR</ram:ReasonCode>", b""
    )
    ack = world.drop("buyer", "bad.xml", no_reason)
    assert ack["reasons"] == ["InvoiceLCRuleError"] and "BR-FR-CDV-15" in ack["messages"][0]
    # a reason the status does not accept (CSV is not judged by BR-FR-CDV: the lifecycle table says no)
    ack = world.drop(
        "buyer", "r.csv", f"{HEADER}\nF-300;{SELLER_SIRET};210;2026-09-02;REJ_SEMAN;x\n".encode()
    )
    assert ack["reasons"] == ["InvoiceLCRuleError"] and "REJ_SEMAN" in ack["messages"][0]
    # the issuer may not approve its own invoice
    ack = world.drop("seller", "own.csv", f"{HEADER}\nF-300;{SELLER_SIRET};205;2026-09-02;;\n".encode())
    assert ack["reasons"] == ["InvoiceLCAccessDenied"]
    assert world.codes(inv) == ["200", "203"]
    # an unreadable status CSV is a flow-level IRR_SYNTAX like any unreadable file
    ack = world.drop("buyer", "h.csv", f"{HEADER}\n".encode())
    assert ack["reasons"] == ["IRR_SYNTAX"] and ack["state"] is FlowState.REJECTED
    assert world.sent == []


@pytest.mark.corpus
@pytest.mark.skipif(not CDAR_CORPUS.is_dir(), reason="CDAR corpus not found")
def test_validation_records_200_213_and_501(world: World) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("good.xml", make_ubl(lines=1, number="Z-1"))
        zf.writestr(
            "bad.xml", make_ubl(lines=1, number="Z-2").replace(b"<cbc:IssueDate>", b"<cbc:IssueDate>x")
        )
        zf.writestr("broken.xml", b"<Invoice")
    ack = world.drop("seller", "batch.zip", buffer.getvalue())
    assert ack["status"] == "Ok"
    rows = {r["item"]: r for r in list_invoices(world.store)}
    assert rows["good.xml"]["lifecycle_status"] == "200"
    assert rows["bad.xml"]["lifecycle_status"] == "213"
    assert rows["broken.xml"]["lifecycle_status"] == "501"
    bad = get_invoice(world.store, rows["bad.xml"]["id"])
    assert bad is not None and bad["lifecycle"][0]["reason_code"] == "REJ_SEMAN"
    assert bad["lifecycle"][0]["source_flow"] == ack["flow_id"]
    # the gateway's own statuses are ready to go out: 200 / 213 to the issuer and the concentrator
    assert all(inv["partner"] == "seller" for _, inv in world.sent)  # where the issuer's copy goes
    platform = lifecycle_flow.platform_of(LifecycleConfig(platform_name="Notre PA", platform_id="0042"))
    sent = {s.code: lifecycle_flow.cdar_messages(s, inv, platform) for s, inv in world.sent}
    assert b'<ram:GlobalID schemeID="0238">0042</ram:GlobalID>' in sent["200"][0].payload
    assert sorted(sent) == ["200", "213", "501"]
    assert [m.audience for m in sent["200"]] == ["issuer", "ppf"]
    assert world.metrics.registry.get_sample_value("gateway_invoice_statuses_total", {"code": "213"}) == 1.0


def test_a_corpus_cdar_for_an_unknown_invoice(world: World) -> None:
    data = (CDAR_CORPUS / "UC4_F202500006_04-CDV-207_En_litige.xml").read_bytes()
    ack = world.drop("buyer", "UC4.xml", data)
    assert ack["flow"]["syntax"] == "cdar" and ack["reasons"] == ["InvoiceLCAccessDenied"]
    assert "F202500006" in ack["messages"][0]
