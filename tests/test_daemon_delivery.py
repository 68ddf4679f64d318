"""Routing and delivery with the real daemon: directory imported, deliveries in the recipient partner's
out/, rejections with their reasons, an out/ folder that fails then heals, SIGKILL mid-delivery."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main as cli_main

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import BUYER_SIRET, luhn_complete, make_ubl

UNKNOWN_SIRET = luhn_complete(luhn_complete("55203253") + "0001")
FAST_DELIVERY = """
[delivery]
threads = 2
backoff_base_seconds = 0.2
ack_backoff_max_seconds = 1.0
poll_interval_seconds = 0.5
"""
HEADER = (
    "siret,siren,routing_code,addressing_id,name,active,service_code_required,engagement_required,"
    "services,partner,syntax"
)


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert cli_main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _import_directory(d: Daemon, capsys: pytest.CaptureFixture[str], syntax: str = "same") -> None:
    csv = d.data_dir / "directory.csv"
    csv.write_text(
        HEADER
        + "\n"
        + f"{BUYER_SIRET},{BUYER_SIRET[:9]},,,Commune de Test,1,1,0,SERV-01:Accueil:1,acme,{syntax}\n"
    )
    capsys.readouterr()
    assert cli_main(["directory", "import", str(csv), "--data-dir", str(d.data_dir)]) == 0


def _deliveries(d: Daemon, partner: str = "acme") -> list[Path]:
    out = d.outbox(partner)
    return (
        sorted(p for p in out.iterdir() if not p.name.endswith((".ack.xml", ".ack.json")))
        if out.exists()
        else []
    )


def _flows(d: Daemon, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    rows = _cli_json(capsys, "flows", "--data-dir", str(d.data_dir), "--limit", "1000")
    return {r["filename"]: r for r in rows}


def test_three_invoices_one_delivery_two_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Daemon(tmp_path / "data", extra=FAST_DELIVERY) as d:
        d.start()
        _import_directory(d, capsys, syntax="cii")
        d.drop("known.xml", make_ubl(lines=1, number="K-1"))
        d.drop("unknown.xml", make_ubl(lines=1, number="K-2", buyer_siret=UNKNOWN_SIRET))
        d.drop("no-service.xml", make_ubl(lines=1, number="K-3", service_code=""))
        wait_for(lambda: len(d.acks()) == 3 and len(_deliveries(d)) == 1, 120, "3 acks and 1 delivery", d)
        wait_for(lambda: _flows(d, capsys)["known.xml"]["state"] == "DELIVERED", 30, "flow DELIVERED", d)
        flows = _flows(d, capsys)
        (delivered,) = _deliveries(d)
        assert delivered.name == f"{flows['known.xml']['id']}_001_K-1.xml"
        assert b"CrossIndustryInvoice" in delivered.read_bytes()  # the recipient asked for CII
        assert read_ack(d.acks_for("known.xml")[0])["flow_status"] == "IN_INTEGRE"
        unknown = read_ack(d.acks_for("unknown.xml")[0])
        assert unknown["status"] == "Error" and unknown["reasons"] == ["DEST_INC"]
        no_service = read_ack(d.acks_for("no-service.xml")[0])
        assert no_service["reasons"] == ["REJ_CONT_B2G"] and "BT-10" in str(no_service["messages"][0])
        assert flows["unknown.xml"]["state"] == flows["no-service.xml"]["state"] == "REJECTED"
        rows = _cli_json(capsys, "deliveries", "--data-dir", str(d.data_dir), "--kind", "delivery")
        assert [(r["state"], r["sink"], r["remote_name"]) for r in rows] == [
            ("sent", "partner:acme", delivered.name)
        ]
        assert d.stop() == 0


def test_out_folder_failing_then_healed_gets_the_ack_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Daemon(tmp_path / "data", extra=FAST_DELIVERY) as d:
        d.start()
        out = d.outbox()
        away = out.with_name("out.away")
        out.rename(away)
        out.write_bytes(b"")  # out/ is not a directory: every write fails (read-only does not stop root)
        d.drop("late.xml", make_ubl(lines=1, number="L-1"))

        def ack_retried() -> bool:
            rows = _cli_json(capsys, "deliveries", "--data-dir", str(d.data_dir), "--kind", "ack")
            return len(rows) == 1 and rows[0]["state"] == "pending" and rows[0]["attempts"] >= 3

        wait_for(ack_retried, 60, "the ack retried while out/ fails", d)
        assert _flows(d, capsys)["late.xml"]["state"] == "ACKNOWLEDGED"  # decided; the file waits
        out.unlink()
        away.rename(out)
        wait_for(lambda: len(d.acks()) == 1, 30, "the ack once out/ is back", d)
        d.drop("after.xml", make_ubl(lines=1, number="L-2"))  # every loop is still alive
        wait_for(lambda: len(d.acks()) == 2, 60, "the next flow's ack", d)
        assert d.stop() == 0
    assert len(d.acks_for("late.xml")) == 1 and read_ack(d.acks_for("late.xml")[0])["status"] == "Ok"
    assert not list(d.outbox().glob("*.part"))


@pytest.mark.slow
def test_sigkill_during_delivery_delivers_every_invoice_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 200
    with Daemon(tmp_path / "data", extra=FAST_DELIVERY) as d:
        d.start()
        _import_directory(d, capsys)
        for i in range(count):
            d.drop(f"k-{i:03d}.xml", make_ubl(lines=1, number=f"KILL-{i:03d}"))
        wait_for(lambda: len(_deliveries(d)) >= 30, 180, "the first deliveries", d)
        d.stop(signal.SIGKILL)
        assert len(_deliveries(d)) < count  # killed mid-delivery
        d.start()
        wait_for(lambda: len(_deliveries(d)) >= count and len(d.acks()) >= count, 300, "every delivery", d)

        def all_delivered() -> bool:
            return all(f["state"] == "DELIVERED" for f in _flows(d, capsys).values())

        wait_for(all_delivered, 60, "every flow DELIVERED", d)
        flows = _flows(d, capsys)
        assert d.stop() == 0
    expected = {f"{flows[f'k-{i:03d}.xml']['id']}_001_KILL-{i:03d}.xml" for i in range(count)}
    assert {p.name for p in _deliveries(d)} == expected  # one file per invoice, no other
    assert all(len(d.acks_for(f"k-{i:03d}.xml")) == 1 for i in range(count))
    assert not list(d.outbox("acme").glob("*.part"))
