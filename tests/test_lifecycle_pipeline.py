"""Lifecycle flows through the real pipeline (issue 18): status CSV and CDAR files dropped by the recipient
are identified, judged (CDAR: official XSD + BR-FR-CDV), applied to the store with the flow's state change,
and acknowledged line by line; every accepted status yields CDAR messages that pass the same rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.config import DeliveryConfig, FolderSinkConfig, GatewayConfig, LifecycleConfig
from gateway.outbound.base import SinkResolver
from gateway.outbound.local_dir import FolderDeliverySink
from gateway.runtime import lifecycle_flow
from gateway.runtime.delivery import DeliveryWorker
from gateway.runtime.intake import Intake
from gateway.runtime.pipeline import Pipeline
from gateway.runtime.routing import Router
from gateway.statemachine import FlowState
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.directory import upsert_entries
from gateway.store.lifecycle import status_history
from gateway.store.outbox import Outbox
from gateway.store.queries import get_flow_detail, get_invoice, list_invoices
from gateway.telemetry.metrics import Metrics
from gateway.transforms.cdar_build import OutgoingStatus, Party, build_cdar
from gateway.transforms.identify import Identifier
from gateway.transforms.lifecycle_in import parse_cdar
from gateway.transforms.route import Recipient
from gateway.transforms.xmlsafe import parse_xml
from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import ValidationConfig

from daemon_harness import read_ack
from invoice_factory import BUYER_SIRET, SELLER_SIRET, make_ubl
from lifecycle_support import CDAR_CORPUS, CdarValidator, cdar_registry

HEADER = "invoice_number;seller_siret;status_code;date;reason_code;reason_text"


class World:
    """Pipeline + routing to partner `buyer` + delivery workers writing to out/<partner> and out/ppf."""

    def __init__(self, tmp: Path, *, directory: bool = True) -> None:
        for d in ("claims", "blobs", "tmp", "in", "out", "rules"):
            (tmp / d).mkdir()
        self.tmp = tmp
        self.config = GatewayConfig(
            sinks={"ppf": FolderSinkConfig(type="folder", path=str(tmp / "out" / "ppf"))},
            lifecycle=LifecycleConfig(platform_name="Notre PA", platform_id="0042", concentrator_sink="ppf"),
        )
        self.store = Store(f"sqlite:///{tmp / 'db.sqlite'}")
        self.store.migrate()
        self.blobs = BlobStore(tmp / "blobs", tmp / "tmp")
        self.metrics = Metrics()
        self.engine = ValidationEngine(ValidationConfig(), cdar_registry(tmp / "rules"))
        self.intake = Intake(self.store, self.blobs, tmp / "claims", 10_000_000, "t", self.metrics)
        self.pipeline = Pipeline(self.config, self.store, self.blobs, Identifier(), self.engine, self.metrics,
                                 "w1", router=Router(self.config, self.blobs))  # fmt: skip
        sinks = SinkResolver()
        sinks.register_prefix("partner:", lambda p: FolderDeliverySink(tmp / "out" / p))
        sinks.register("ppf", FolderDeliverySink(tmp / "out" / "ppf"))
        self.delivery = DeliveryWorker(
            self.store, Outbox(self.store, self.blobs), sinks, DeliveryConfig(), self.metrics, "d1",
            sent_hooks=[lifecycle_flow.delivered_hook(self.config, self.metrics)],
        )  # fmt: skip
        if directory:
            with self.store.transaction() as conn:
                upsert_entries(conn, [Recipient(siren=BUYER_SIRET[:9], siret=BUYER_SIRET, name="Buyer",
                                                partner="buyer")], source="csv", now=datetime.now(UTC))  # fmt: skip

    def drop(self, partner: str, name: str, data: bytes) -> dict[str, Any]:
        """Take the file in, run the pipeline and the delivery workers, return the acknowledgement."""
        (self.tmp / "in" / name).write_bytes(data)
        taken = self.intake.take(partner, self.tmp / "in" / name)
        assert taken is not None
        flow = self.store.claim_next("w1", 300)
        assert flow is not None and flow.id == taken.flow_id
        state = self.pipeline.process(flow)
        while self.delivery.run_once():
            pass
        (ack_path,) = (self.tmp / "out" / partner).glob(f"*.{taken.flow_id}.ack.xml")
        ack = read_ack(ack_path)
        ack["state"] = state
        ack["flow"] = get_flow_detail(self.store, taken.flow_id)["flow"]
        return ack

    def codes(self, invoice_id: int) -> list[str]:
        with self.store.reader() as conn:
            return [s["code"] for s in status_history(conn, invoice_id)]

    def cdars(self, folder: str) -> list[Path]:
        return sorted((self.tmp / "out" / folder).glob("CDV-*.xml"))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def deliver_invoice(world: World, number: str) -> int:
    """An invoice from partner `seller`, routed and delivered to `buyer`: 200 then 203."""
    ack = world.drop("seller", f"{number}.xml", make_ubl(lines=1, number=number))
    assert ack["status"] == "Ok", ack
    (row,) = list_invoices(world.store, number=number)
    assert (world.tmp / "out" / "buyer").is_dir()
    assert world.codes(row["id"]) == ["200", "203"]
    return int(row["id"])


def buyer_cdar(number: str, code: str, reason: str | None = None, **kw: Any) -> bytes:
    """A CDAR as the buyer's platform sends it (issuer BY, recipient SE)."""
    status = OutgoingStatus(
        status_id=1, code=code, at=datetime(2026, 9, 3, 8, tzinfo=UTC), invoice_number=number,
        invoice_date="2024-01-15", seller=Party(SELLER_SIRET[:9], "Seller"), buyer=Party("987654324", "Buyer"),
        set_by="recipient", type_code="380", reason_code=reason, reason_text=reason and "motif", **kw,
    )  # fmt: skip
    return build_cdar(status, "issuer")


def read_cdar(path: Path) -> tuple[str, str, str | None]:
    """(status code, invoice number, reason) of a CDAR file written by the delivery worker."""
    (line,) = parse_cdar(parse_xml(path.read_bytes()))
    return line.code, line.invoice_number or "", line.reason_code


def test_whole_cycle_from_the_recipient(world: World, tmp_path: Path) -> None:
    inv = deliver_invoice(world, "F-100")
    assert [read_cdar(p)[0] for p in world.cdars("seller")] == ["203"]  # the issuer hears it was delivered
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

    # each status reached the issuer's out/ as a CDAR that passes the XSD and BR-FR-CDV with no fatal
    # finding; the PPF copies (200, 212) went to the concentrator sink
    validator = CdarValidator(tmp_path / "rules2")
    issuer = world.cdars("seller")
    assert sorted(read_cdar(p)[0] for p in issuer) == ["203", "204", "205", "211", "212"]
    ppf = world.cdars("ppf")
    assert sorted(read_cdar(p)[0] for p in ppf) == ["200", "212"]
    for path in issuer + ppf:
        assert validator.fatal(path.read_bytes()) == [], path.name
        assert read_cdar(path)[1] == "F-100"
    assert b"einvoicingF2" in ppf[0].read_bytes() and b'schemeID="0238">0042<' in ppf[0].read_bytes()
    assert not world.cdars("buyer")  # the buyer set those statuses: nothing to tell it

    # after 212 nothing more; an unknown invoice is refused too; each line gets its own detail
    late = f"{HEADER}\nF-100;{SELLER_SIRET};205;2026-09-04;;\nF-404;{SELLER_SIRET};204;2026-09-04;;\n"
    ack = world.drop("buyer", "late.csv", late.encode())
    assert (ack["status"], ack["state"]) == ("Error", FlowState.REJECTED)
    assert ack["reasons"] == ["InvoiceLCStatusError", "InvoiceLCAccessDenied"]
    assert "final status" in ack["messages"][0] and "unknown invoice" in ack["messages"][1]
    assert world.codes(inv) == ["200", "203", "204", "205", "211", "212"]
    assert len(world.cdars("seller")) == 5


def test_refusal_then_nothing(world: World) -> None:
    inv = deliver_invoice(world, "F-200")
    ack = world.drop("buyer", "refus.xml", buyer_cdar("F-200", "210", "TX_TVA_ERR"))
    assert ack["status"] == "Ok", ack["messages"]
    assert world.codes(inv) == ["200", "203", "210"]
    assert ("210", "F-200", "TX_TVA_ERR") in [read_cdar(p) for p in world.cdars("seller")]
    assert ("210", "F-200", "TX_TVA_ERR") in [read_cdar(p) for p in world.cdars("ppf")]
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
    # the issuer may not approve its own invoice; a partner it was not delivered to may not touch it
    ack = world.drop("seller", "own.csv", f"{HEADER}\nF-300;{SELLER_SIRET};205;2026-09-02;;\n".encode())
    assert ack["reasons"] == ["InvoiceLCAccessDenied"]
    ack = world.drop("intruder", "x.csv", f"{HEADER}\nF-300;{SELLER_SIRET};205;2026-09-02;;\n".encode())
    assert ack["reasons"] == ["InvoiceLCAccessDenied"] and "not sent to you" in ack["messages"][0]
    assert world.codes(inv) == ["200", "203"]
    # an unreadable status CSV is a flow-level IRR_SYNTAX like any unreadable file
    ack = world.drop("buyer", "h.csv", f"{HEADER}\n".encode())
    assert ack["reasons"] == ["IRR_SYNTAX"] and ack["state"] is FlowState.REJECTED
    assert [read_cdar(p)[0] for p in world.cdars("seller")] == ["203"]


def test_the_gateway_records_200_213_221_and_501(world: World) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("good.xml", make_ubl(lines=1, number="Z-1"))
        zf.writestr(
            "bad.xml", make_ubl(lines=1, number="Z-2").replace(b"<cbc:IssueDate>", b"<cbc:IssueDate>x")
        )
        zf.writestr("broken.xml", b"<Invoice")
        zf.writestr("twin.xml", make_ubl(lines=1, number="Z-1"))  # DOUBLON at routing
    ack = world.drop("seller", "batch.zip", buffer.getvalue())
    assert ack["status"] == "Ok"
    rows = {r["item"]: r for r in list_invoices(world.store)}
    assert world.codes(rows["good.xml"]["id"]) == ["200", "203"]
    assert world.codes(rows["bad.xml"]["id"]) == ["213"]
    assert world.codes(rows["broken.xml"]["id"]) == ["501"]
    assert world.codes(rows["twin.xml"]["id"]) == ["213"]
    twin = get_invoice(world.store, rows["twin.xml"]["id"])
    assert twin is not None and twin["lifecycle"][0]["reason_code"] == "DOUBLON"
    assert twin["lifecycle"][0]["source_flow"] == ack["flow_id"]
    # the ack already tells the issuer about 200 / 213 / 501: only 203 is a CDAR for it; the concentrator
    # gets 200 and the 213s
    assert [read_cdar(p)[0] for p in world.cdars("seller")] == ["203"]
    assert sorted(read_cdar(p)[:1] + read_cdar(p)[2:] for p in world.cdars("ppf")) == [
        ("200", None), ("213", "DOUBLON"), ("213", "REJ_SEMAN"),
    ]  # fmt: skip
    assert world.metrics.registry.get_sample_value("gateway_invoice_statuses_total", {"code": "213"}) == 2.0


def test_the_issuer_declares_payment_and_the_recipient_hears_it(world: World, tmp_path: Path) -> None:
    inv = deliver_invoice(world, "F-400")
    csv = f"{HEADER};amount;vat_rate\nF-400;{SELLER_SIRET};212;2026-09-20;;;600.00;20\n"
    ack = world.drop("seller", "paid.csv", csv.encode())
    assert ack["status"] == "Ok", ack["messages"]
    assert world.codes(inv) == ["200", "203", "212"]
    (to_buyer,) = world.cdars("buyer")  # set by the issuer: the recipient is told, through its delivery sink
    assert read_cdar(to_buyer)[:2] == ("212", "F-400")
    assert b"<ram:ValueAmount" in to_buyer.read_bytes() and b">600.00<" in to_buyer.read_bytes()
    assert CdarValidator(tmp_path / "rules2").fatal(to_buyer.read_bytes()) == []
    assert ("212", "F-400", None) in [read_cdar(p) for p in world.cdars("ppf")]
    assert [read_cdar(p)[0] for p in world.cdars("seller")] == ["203"]


def test_without_a_directory_statuses_still_apply(tmp_path: Path) -> None:
    """Routing off (empty directory): 200 only, no delivery, so 204 waits for a 203 that never comes."""
    world = World(tmp_path, directory=False)
    ack = world.drop("seller", "n.xml", make_ubl(lines=1, number="N-1"))
    assert ack["status"] == "Ok"
    (row,) = list_invoices(world.store, number="N-1")
    assert world.codes(row["id"]) == ["200"]
    ack = world.drop("buyer", "s.csv", f"{HEADER}\nN-1;{SELLER_SIRET};204;2026-09-02;;\n".encode())
    assert ack["reasons"] == ["InvoiceLCStatusError"] and "203" in ack["messages"][0]


@pytest.mark.corpus
@pytest.mark.skipif(not CDAR_CORPUS.is_dir(), reason="CDAR corpus not found")
def test_a_corpus_cdar_for_an_unknown_invoice(world: World) -> None:
    data = (CDAR_CORPUS / "UC4_F202500006_04-CDV-207_En_litige.xml").read_bytes()
    ack = world.drop("buyer", "UC4.xml", data)
    assert ack["flow"]["syntax"] == "cdar" and ack["reasons"] == ["InvoiceLCAccessDenied"]
    assert "F202500006" in ack["messages"][0]
