"""The real daemon through a lifecycle (issue 18): the seller's invoice gets 200, the buyer's status files
(CSV and CDAR, judged by the installed France_RFE pack in the validation processes) move it along, and
illegal or unknown ones are refused in the acknowledgement. 203 is set in the store as delivery will."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.transforms.cdar_build import OutgoingStatus, Party, build_cdar
from gateway.validation.rulepacks import RulePackRegistry

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import BUYER_SIRET, SELLER_SIRET, make_ubl
from lifecycle_support import CdarValidator, require_france_rfe

HEADER = "invoice_number;seller_siret;status_code;date;reason_code;reason_text;amount;vat_rate"


def lifecycle(data: Path) -> dict[str, str]:
    with sqlite3.connect(data / "gateway.db") as conn:
        return dict(conn.execute("SELECT number, lifecycle_status FROM invoices"))


def cdars(d: Daemon, partner: str) -> list[Path]:
    return sorted(d.outbox(partner).glob("CDV-*.xml"))


def cdar(number: str, code: str, reason: str | None = None) -> bytes:
    return build_cdar(
        OutgoingStatus(
            status_id=1,
            code=code,
            at=datetime(2026, 9, 3, 8, tzinfo=UTC),
            invoice_number=number,
            invoice_date="2024-01-15",
            seller=Party(SELLER_SIRET[:9]),
            buyer=Party("987654324", "Buyer"),
            set_by="recipient",
            reason_code=reason,
            reason_text=reason,
        ),  # fmt: skip
        "issuer",
    )


@pytest.mark.slow
def test_daemon_drives_a_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    release = require_france_rfe()
    data = tmp_path / "data"
    RulePackRegistry(data / "rules").install(release)
    directory = tmp_path / "directory.csv"
    directory.write_text(
        "siret,siren,routing_code,addressing_id,name,active,service_code_required,engagement_required,services,"
        f"partner,syntax\n{BUYER_SIRET},{BUYER_SIRET[:9]},,,Buyer,1,0,0,,acme,same\n"
    )
    with Daemon(data) as d:
        d.start()
        assert main(["directory", "import", str(directory), "--data-dir", str(data)]) == 0

        def answer(partner: str, name: str, body: bytes) -> dict[str, object]:
            d.drop(name, body, partner=partner)
            wait_for(lambda: len(d.acks_for(name, partner)) == 1, 120, f"ack of {name}", d)
            return read_ack(d.acks_for(name, partner)[0])

        assert answer("demo", "F-D1.xml", make_ubl(lines=1, number="F-D1"))["status"] == "Ok"
        assert answer("demo", "F-D2.xml", make_ubl(lines=1, number="F-D2"))["status"] == "Ok"
        with sqlite3.connect(data / "gateway.db") as conn:
            ids = dict(conn.execute("SELECT number, id FROM invoices"))
        # delivered to acme (the directory routes the buyer there): 200 then 203, and the seller hears it
        wait_for(lambda: lifecycle(data) == {"F-D1": "203", "F-D2": "203"}, 60, "203 after delivery", d)
        wait_for(lambda: len(cdars(d, "demo")) == 2, 60, "the issuer's 203 CDAR", d)

        csv = f"{HEADER}\nF-D1;{SELLER_SIRET};204;2026-09-02;;;;\n".encode()
        assert answer("acme", "s-204.csv", csv)["status"] == "Ok"
        for code in ("205", "211"):
            ack = answer("acme", f"cdar-{code}.xml", cdar("F-D1", code))
            assert (ack["status"], ack["reasons"]) == ("Ok", []), ack["messages"]
        csv = f"{HEADER}\nF-D1;{SELLER_SIRET};212;2026-09-09;;;1200.00;20\n".encode()
        assert answer("acme", "s-212.csv", csv)["status"] == "Ok"
        ack = answer("acme", "refus.xml", cdar("F-D2", "210", "TX_TVA_ERR"))
        assert ack["status"] == "Ok", ack["messages"]
        late = f"{HEADER}\nF-D1;{SELLER_SIRET};205;2026-09-10;;;;\nF-D2;{SELLER_SIRET};211;2026-09-10;;;;\n"
        late += f"F-404;{SELLER_SIRET};204;2026-09-10;;;;\n"
        ack = answer("acme", "late.csv", late.encode())
        assert ack["status"] == "Error"
        assert ack["reasons"] == ["InvoiceLCStatusError", "InvoiceLCStatusError", "InvoiceLCAccessDenied"]
        # the seller got a CDAR for each status: 203 (x2), 204, 205, 211, 212, 210 — all pass the rules
        wait_for(lambda: len(cdars(d, "demo")) == 7, 60, "the issuer's CDAR messages", d)
        assert d.stop() == 0
    validator = CdarValidator(tmp_path / "rules")
    for path in cdars(d, "demo"):
        assert validator.fatal(path.read_bytes()) == [], path.name

    capsys.readouterr()
    assert main(["invoice", str(ids["F-D1"]), "--json", "--data-dir", str(data)]) == 0
    history = json.loads(capsys.readouterr().out)["lifecycle"]
    assert [s["code"] for s in history] == ["200", "203", "204", "205", "211", "212"]
    assert history[-1]["details"]["amount"] == "1200.00" and history[2]["partner"] == "acme"
    assert main(["invoices", "--status", "210", "--json", "--data-dir", str(data)]) == 0
    assert [r["number"] for r in json.loads(capsys.readouterr().out)] == ["F-D2"]
