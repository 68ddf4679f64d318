"""The real daemon, as a subprocess: every dropped file gets exactly one correct acknowledgement."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest
from lxml import etree

from gateway.resources import resource_path

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_cii, make_ubl

pytestmark = pytest.mark.timeout(600)


def test_each_kind_of_drop_gets_one_correct_ack(tmp_path: Path) -> None:
    valid = make_ubl(lines=3, number="INV-OK-1")
    invalid = _break_totals(make_ubl(lines=2, number="INV-BAD-1"))
    drops = {
        "valid.xml": valid,
        "valid-cii.xml": make_cii(lines=2, number="INV-CII-1"),
        "empty.xml": b"",
        "oversize.xml": b"<x>" + b" " * 1_000_100 + b"</x>",
        "garbage.bin": b"\x00\x01 this is not an invoice",
        "not-invoice.xml": b"<?xml version='1.0'?><Order xmlns='urn:x'/>",
        "invalid.xml": invalid,
    }
    schema = etree.XMLSchema(etree.parse(str(resource_path("schemas", "ack-1.xsd"))))
    with Daemon(tmp_path / "data", json_copy=True) as d:
        d.start()
        for name, data in drops.items():
            d.drop(name, data)
        wait_for(lambda: all(d.acks_for(n) for n in drops), 120, "an ack for every drop", d)
        d.drop("duplicate.xml", valid)  # same bytes as valid.xml, after it was acknowledged
        wait_for(lambda: bool(d.acks_for("duplicate.xml")), 60, "duplicate ack", d)
        assert d.stop() == 0

    for name in [*drops, "duplicate.xml"]:
        acks = d.acks_for(name)
        assert len(acks) == 1, (name, acks)
        schema.assertValid(etree.parse(str(acks[0])))
        assert acks[0].with_suffix(".json").exists()
    result = {name: read_ack(d.acks_for(name)[0]) for name in [*drops, "duplicate.xml"]}
    assert result["valid.xml"]["status"] == "Ok" and result["valid.xml"]["flow_status"] == "IN_INTEGRE"
    assert result["valid-cii.xml"]["status"] == "Ok"
    assert result["empty.xml"]["reasons"] == ["IRR_VID_F"]
    assert result["oversize.xml"]["reasons"] == ["IRR_TAILLE_F"]
    assert result["garbage.bin"]["reasons"] == ["IRR_SYNTAX"]
    assert result["not-invoice.xml"]["reasons"] == ["IRR_SYNTAX"]
    assert "not an invoice" in str(result["not-invoice.xml"]["messages"][0])
    assert result["invalid.xml"]["status"] == "Error" and result["invalid.xml"]["reasons"] == ["REJ_SEMAN"]
    assert "BR-" in str(result["invalid.xml"]["messages"][0])
    assert result["duplicate.xml"]["reasons"] == ["AlreadyExistingFlow"]
    assert result["valid.xml"]["flow_id"] in str(result["duplicate.xml"]["messages"][0])
    assert not list(d.inbox().iterdir())
    states = {name: state for _, name, state in d.flows()}
    assert states["valid.xml"] == "ACKNOWLEDGED" and states["garbage.bin"] == "REJECTED"
    assert len(d.flows()) == len(drops) + 1


def test_sigkill_mid_batch_loses_nothing_and_answers_once(tmp_path: Path) -> None:
    files = {}
    for i in range(200):
        if i % 10 == 3:
            files[f"bad-{i:03d}.xml"] = f"<not-closed-{i}".encode()
        elif i % 10 == 7:
            files[f"cii-{i:03d}.xml"] = make_cii(lines=1, number=f"C-{i}")
        else:
            files[f"inv-{i:03d}.xml"] = make_ubl(lines=1, number=f"U-{i}")
    with Daemon(tmp_path / "data") as d:
        d.start()
        for name, data in files.items():
            d.drop(name, data)
        wait_for(lambda: len(d.acks()) >= 15, 120, "the first acks", d)
        d.stop(signal.SIGKILL)
        assert len(d.acks()) < 200, "the daemon finished before it was killed; the test proves nothing"
        d.start()
        wait_for(lambda: len(d.acks()) >= 200, 300, "all 200 acks after restart", d)
        # let any in-flight rewrite finish, then stop cleanly
        assert d.stop() == 0

    for name in files:
        assert len(d.acks_for(name)) == 1, name
    assert len(d.acks()) == 200
    assert not list(d.outbox().glob("*.part"))
    with sqlite3.connect(d.data_dir / "gateway.db") as conn:
        rows = list(conn.execute("SELECT filename, state FROM flows"))
        assert sorted(r[0] for r in rows) == sorted(files)
        assert {r[1] for r in rows} <= {"ACKNOWLEDGED", "REJECTED"}
        events = conn.execute("SELECT COUNT(*) FROM flow_events WHERE to_state = 'RECEIVED'").fetchone()[0]
        assert events == 200
    assert not list(d.inbox().iterdir())
    assert not any((d.data_dir / "spool" / "claim").rglob("*.xml"))


def _break_totals(xml: bytes) -> bytes:
    """Change the amount due so BR-CO-16 (due = total - prepaid + rounding) fails."""
    doc = etree.fromstring(xml)
    ns = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    payable = doc.find(".//cbc:PayableAmount", ns)
    payable.text = "999999.99"
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def test_demo_mode_drops_samples_and_answers_each(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data") as d:
        d.start("--demo")
        wait_for(lambda: len(d.acks()) >= 7, 120, "acks for the 7 demo flows", d)
        assert d.stop() == 0
    verdicts = {p.name.split(".")[0].rsplit("-", 1)[0]: read_ack(p) for p in d.acks()}  # minus the run tag
    assert len(verdicts) == 7
    assert verdicts["demo-ubl-invoice"]["flow_status"] == "IN_INTEGRE"
    assert verdicts["demo-cii-invoice"]["flow_status"] == "IN_INTEGRE"
    assert verdicts["demo-credit-note"]["flow_status"] == "IN_INTEGRE"
    assert verdicts["demo-invalid-totals"]["reasons"] == ["REJ_SEMAN"]
    assert "BR-CO-16" in str(verdicts["demo-invalid-totals"]["messages"][0])
    assert verdicts["demo-not-an-invoice"]["reasons"] == ["IRR_SYNTAX"]
    assert verdicts["demo-empty"]["reasons"] == ["IRR_VID_F"]


def test_sigterm_drains_and_restart_resumes(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data") as d:
        d.start()
        for i in range(30):
            d.drop(f"t-{i:02d}.xml", make_ubl(lines=5, number=f"T-{i}"))
        wait_for(lambda: len(d.acks()) >= 3, 120, "first acks", d)
        assert d.stop(signal.SIGTERM) == 0
        assert d.log_has("gateway stopped")
        d.start()
        wait_for(lambda: len(d.acks()) >= 30, 180, "all acks after restart", d)
        assert d.stop() == 0
    assert all(len(d.acks_for(f"t-{i:02d}.xml")) == 1 for i in range(30))


def test_flows_and_flow_commands_show_the_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    with Daemon(tmp_path / "data") as d:
        d.start()
        d.drop("ok.xml", make_ubl(lines=1, number="H-1"))
        d.drop("junk.xml", b"<<<")
        wait_for(lambda: len(d.acks()) >= 2, 120, "two acks", d)
        assert d.stop() == 0
    data = str(d.data_dir)
    assert main(["flows", "--data-dir", data, "--state", "rejected"]) == 0
    out = capsys.readouterr().out
    assert "junk.xml" in out and "IRR_SYNTAX" in out and "ok.xml" not in out
    assert main(["flows", "--data-dir", data, "--since", "1h", "--json"]) == 0
    flows = {f["filename"]: f for f in json.loads(capsys.readouterr().out)}
    assert set(flows) == {"ok.xml", "junk.xml"}
    assert main(["flow", flows["ok.xml"]["id"], "--data-dir", data]) == 0
    history = capsys.readouterr().out
    for state in ("RECEIVED", "IDENTIFIED", "TRANSFORMED", "VALIDATED", "ACKNOWLEDGED"):
        assert state in history
    assert "H-1" in history
    assert main(["flow", flows["ok.xml"]["id"], "--data-dir", data, "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert [e["to_state"] for e in detail["events"]][-1] == "ACKNOWLEDGED"
    assert detail["invoices"][0]["report"]["outcome"] == "valid"
    assert main(["flow", "nope", "--data-dir", data]) == 1
    assert main(["replay", flows["junk.xml"]["id"], "--data-dir", data]) == 1  # only QUARANTINED flows


def test_daemon_on_postgresql(tmp_path: Path) -> None:
    import os

    from conftest import _reset_pg

    url = os.environ.get("GATEWAY_TEST_PG_URL")
    if not url:
        pytest.skip("GATEWAY_TEST_PG_URL is not set: the daemon-on-PostgreSQL test is skipped")
    _reset_pg(url)
    daemon = Daemon(tmp_path / "data")
    config = daemon.data_dir / "gateway.toml"
    config.write_text(config.read_text() + f'\n[store]\nurl = "{url}"\n')
    with daemon as d:
        d.start()
        d.drop("pg-ok.xml", make_ubl(lines=2, number="PG-1"))
        d.drop("pg-bad.xml", b"garbage")
        wait_for(lambda: len(d.acks()) >= 2, 120, "two acks on PostgreSQL", d)
        d.drop("pg-dup.xml", make_ubl(lines=2, number="PG-1"))
        wait_for(lambda: len(d.acks()) >= 3, 120, "three acks on PostgreSQL", d)
        assert d.stop() == 0
    verdicts = {p.name.split(".")[0]: read_ack(p) for p in d.acks()}
    assert verdicts["pg-ok"]["status"] == "Ok"
    assert verdicts["pg-dup"]["reasons"] == ["AlreadyExistingFlow"]
    assert verdicts["pg-bad"]["reasons"] == ["IRR_SYNTAX"]
    assert not (d.data_dir / "gateway.db").exists()
    _reset_pg(url)
