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
from gateway.store.db import Store
from gateway.store.lifecycle import record_status
from gateway.transforms.cdar_build import OutgoingStatus, Party, build_cdar
from gateway.validation.rulepacks import RulePackRegistry

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import SELLER_SIRET, make_ubl
from lifecycle_support import require_france_rfe

HEADER = "invoice_number;seller_siret;status_code;date;reason_code;reason_text;amount;vat_rate"


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
    with Daemon(data) as d:
        d.start()

        def answer(partner: str, name: str, body: bytes) -> dict[str, object]:
            d.drop(name, body, partner=partner)
            wait_for(lambda: len(d.acks_for(name, partner)) == 1, 120, f"ack of {name}", d)
            return read_ack(d.acks_for(name, partner)[0])

        assert answer("demo", "F-D1.xml", make_ubl(lines=1, number="F-D1"))["status"] == "Ok"
        assert answer("demo", "F-D2.xml", make_ubl(lines=1, number="F-D2"))["status"] == "Ok"
        with sqlite3.connect(data / "gateway.db") as conn:
            ids = dict(conn.execute("SELECT number, id FROM invoices"))
            assert dict(conn.execute("SELECT number, lifecycle_status FROM invoices")) == {
                "F-D1": "200",
                "F-D2": "200",
            }
        store = Store(f"sqlite:///{data / 'gateway.db'}")
        with store.transaction() as conn:  # what delivery records when the invoice reaches the buyer
            record_status(conn, ids["F-D1"], "203", actor="platform")
            record_status(conn, ids["F-D2"], "203", actor="platform")
        store.close()

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
        assert d.stop() == 0

    capsys.readouterr()
    assert main(["invoice", str(ids["F-D1"]), "--json", "--data-dir", str(data)]) == 0
    history = json.loads(capsys.readouterr().out)["lifecycle"]
    assert [s["code"] for s in history] == ["200", "203", "204", "205", "211", "212"]
    assert history[-1]["details"]["amount"] == "1200.00" and history[2]["partner"] == "acme"
    assert main(["invoices", "--status", "210", "--json", "--data-dir", str(data)]) == 0
    assert [r["number"] for r in json.loads(capsys.readouterr().out)] == ["F-D2"]
