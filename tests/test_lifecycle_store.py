"""Status history in the store (issue 18, interface 4) on SQLite and PostgreSQL: record_status, readers,
applying a status flow, and what operators see (queries, `gateway invoice ID`, `gateway invoices --status`)."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.commands.monitor import _invoice_status, cmd_invoice, format_invoice, format_invoices
from gateway.store import queries
from gateway.store.db import InvoiceRecord, Store, new_flow_id, utcnow
from gateway.store.lifecycle import (
    ACCEPTED,
    REJECTED,
    StatusRefused,
    apply_status_lines,
    current_status,
    find_invoice,
    flow_items,
    record_status,
    status_history,
)
from gateway.store.models import InvoiceRow, InvoiceStatusRow
from gateway.transforms.lifecycle import (
    LC_ACCESS_DENIED,
    LC_RULE_ERROR,
    LC_STATUS_ERROR,
    Actor,
)
from gateway.transforms.lifecycle_in import StatusLine

SELLER_SIRET = "12345678200010"
BUYER_SIRET = "98765432400019"


@pytest.fixture
def store(store_url: str) -> Store:
    s = Store(store_url)
    s.migrate()
    yield s  # type: ignore[misc]
    s.close()


def add_invoice(store: Store, partner: str, number: str, seller: str = SELLER_SIRET) -> int:
    flow_id = new_flow_id()
    store.record_received(
        flow_id=flow_id, partner=partner, source="folder", filename=f"{number}.xml", size=10, sha256=None,
        received_at=utcnow(), worker="t",
    )  # fmt: skip
    summary = {
        "number": number, "type_code": "380", "issue_date": "2026-09-01", "currency": "EUR",
        "seller_siret": seller, "seller_siren": seller[:9], "seller_name": "Vendeur", "buyer_siret": BUYER_SIRET,
        "buyer_name": "Acheteur", "total_net": "1000.00", "total_vat": "200.00", "total_gross": "1200.00",
        "amount_due": "1200.00",
    }  # fmt: skip
    with store.transaction() as conn:
        store._insert_invoice(conn, flow_id, InvoiceRecord(1, "i.xml", "ubl-invoice", None, summary, "accepted",
                                                           None, None, None))  # fmt: skip
        return int(conn.execute(select(func.max(InvoiceRow.id))).scalar_one())


def line(
    code: str, number: str = "F-1", seller: str = SELLER_SIRET, reason: str | None = None, **kw: object
) -> StatusLine:
    return StatusLine(seq=kw.pop("seq", 1), item="line 2", code=code, invoice_number=number, seller_id=seller,  # type: ignore[arg-type]
                      reason_code=reason, at=datetime(2026, 9, 2, 12, tzinfo=UTC), **kw)  # type: ignore[arg-type]  # fmt: skip


def count_statuses(store: Store) -> int:
    with store.reader() as conn:
        return int(conn.execute(select(func.count()).select_from(InvoiceStatusRow)).scalar_one())


def test_record_status_keeps_history_and_current(store: Store) -> None:
    inv = add_invoice(store, "seller-co", "F-1")
    with store.transaction() as conn:
        first = record_status(conn, inv, "200", actor="platform", source_flow="flow-a")
        second = record_status(conn, inv, "203", actor=Actor.PLATFORM)
    assert (first.previous, second.previous, second.label) == (None, "200", "Mise à disposition")
    with store.transaction() as conn:
        third = record_status(
            conn, inv, "210", actor="recipient", reason_code="TX_TVA_ERR", reason_text="taux faux",
            partner="buyer-co", at=datetime(2026, 9, 5, 9, tzinfo=UTC),
        )  # fmt: skip
    with store.reader() as conn:
        history = status_history(conn, inv)
        assert current_status(conn, inv) == "210"
    assert [(h["code"], h["actor"], h["reason_code"]) for h in history] == [
        ("200", "platform", None), ("203", "platform", None), ("210", "recipient", "TX_TVA_ERR"),
    ]  # fmt: skip
    assert history[0]["source_flow"] == "flow-a" and history[2]["partner"] == "buyer-co"
    assert history[2]["at"] == datetime(2026, 9, 5, 9, tzinfo=UTC) == third.at
    assert history[2]["label"] == "Refusée" and history[2]["reason_text"] == "taux faux"
    # nothing after 210: refused, nothing written
    with pytest.raises(StatusRefused) as refused, store.transaction() as conn:
        record_status(conn, inv, "212", actor="recipient")
    assert refused.value.reason_code == LC_STATUS_ERROR and "final status" in refused.value.message
    assert count_statuses(store) == 3
    with pytest.raises(StatusRefused) as unknown, store.transaction() as conn:
        record_status(conn, 999_999, "200", actor="platform")
    assert unknown.value.reason_code == LC_ACCESS_DENIED


def test_refusal_rolls_back_with_the_transaction(store: Store) -> None:
    inv = add_invoice(store, "seller-co", "F-1")
    with pytest.raises(StatusRefused), store.transaction() as conn:
        record_status(conn, inv, "200", actor="platform")
        record_status(conn, inv, "212", actor="recipient")  # 212 before 203
    with store.reader() as conn:
        assert current_status(conn, inv) is None and status_history(conn, inv) == []


def test_find_invoice_by_number_and_seller(store: Store) -> None:
    old = add_invoice(store, "seller-co", "F-1")
    new = add_invoice(store, "seller-co", "F-1")
    other = add_invoice(store, "other", "F-1", seller="55566677700018")
    with store.reader() as conn:
        assert find_invoice(conn, "F-1", SELLER_SIRET)["id"] == new != old  # type: ignore[index]
        assert find_invoice(conn, "F-1", SELLER_SIRET[:9])["id"] == new  # type: ignore[index]  # SIREN
        assert find_invoice(conn, "F-1", "55566677700018")["id"] == other  # type: ignore[index]
        assert find_invoice(conn, "F-1", "11111111100011") is None
        assert find_invoice(conn, "F-2", SELLER_SIRET) is None
        assert find_invoice(conn, "F-1", SELLER_SIRET)["partner"] == "seller-co"  # type: ignore[index]


def test_apply_status_lines(store: Store) -> None:
    inv = add_invoice(store, "seller-co", "F-1")
    with store.transaction() as conn:
        record_status(conn, inv, "200", actor="platform")
        record_status(conn, inv, "203", actor="platform")
    flow_id = new_flow_id()
    store.record_received(flow_id=flow_id, partner="buyer-co", source="folder", filename="s.csv", size=1,
                          sha256=None, received_at=utcnow(), worker="t")  # fmt: skip
    seen: list[str] = []
    lines = [
        line("204", seq=1),
        line("205", seq=2),
        line("204", seq=3),  # not after 205
        line("204", number="NOPE", seq=4),  # unknown invoice
        line("207", seq=5),  # a dispute needs its reason
        line("207", reason="REJ_SEMAN", seq=6),  # not a reason for 207
        line("211", seq=7),
        line("212", seq=8, amount=Decimal("1200"), vat_rate=Decimal("20")),
        StatusLine(9, "line 11", error="status_code '2x' is not a 3-digit code"),
        line("205", seq=10),  # after 212: final
    ]
    with store.transaction() as conn:
        items = apply_status_lines(
            conn, flow_id=flow_id, partner="buyer-co", lines=lines,
            on_recorded=lambda _c, status, invoice: seen.append(f"{status.code}:{invoice['number']}"),
        )  # fmt: skip
    assert [i.status for i in items] == [ACCEPTED, ACCEPTED, REJECTED, REJECTED, REJECTED, REJECTED, ACCEPTED,
                                         ACCEPTED, REJECTED, REJECTED]  # fmt: skip
    assert [i.reason_code for i in items if i.status == REJECTED] == [
        LC_STATUS_ERROR, LC_ACCESS_DENIED, LC_RULE_ERROR, LC_RULE_ERROR, LC_RULE_ERROR, LC_STATUS_ERROR,
    ]  # fmt: skip
    assert "unknown invoice" in (items[3].reason_message or "")
    assert seen == ["204:F-1", "205:F-1", "211:F-1", "212:F-1"]
    with store.reader() as conn:
        history = status_history(conn, inv)
        rows = flow_items(conn, flow_id)
    assert [h["code"] for h in history] == ["200", "203", "204", "205", "211", "212"]
    assert all(h["actor"] == "recipient" and h["source_flow"] == flow_id for h in history[2:])
    assert history[-1]["details"] == {"amount": "1200", "vat_rate": "20", "currency": "EUR"}
    assert [r["status"] for r in rows] == [i.status for i in items] and rows[3]["invoice_id"] is None


def test_sender_roles_and_refusal_of_a_whole_message(store: Store) -> None:
    inv = add_invoice(store, "seller-co", "F-1")
    with store.transaction() as conn:
        record_status(conn, inv, "200", actor="platform")
        record_status(conn, inv, "203", actor="platform")
    flow_id = new_flow_id()
    store.record_received(flow_id=flow_id, partner="seller-co", source="folder", filename="s.csv", size=1,
                          sha256=None, received_at=utcnow(), worker="t")  # fmt: skip
    with store.transaction() as conn:
        # the seller itself may not approve its invoice; a whole message refused records nothing
        own = apply_status_lines(conn, flow_id=flow_id, partner="seller-co", lines=[line("205")])
        whole = apply_status_lines(
            conn, flow_id=flow_id, partner="buyer-co", lines=[line("204", seq=2)],
            refusal=(LC_RULE_ERROR, "the CDAR message is not valid: BR-FR-CDV-15"),
        )  # fmt: skip
        # routing knows the recipient: another partner is refused as if the invoice were unknown
        stranger = apply_status_lines(
            conn, flow_id=flow_id, partner="intruder", lines=[line("204", seq=3)],
            recipient_of=lambda _c, _inv: "buyer-co",
        )  # fmt: skip
    assert own[0].reason_code == LC_ACCESS_DENIED and "not by the issuer" in (own[0].reason_message or "")
    assert whole[0].reason_code == LC_RULE_ERROR and "BR-FR-CDV-15" in (whole[0].reason_message or "")
    assert stranger[0].reason_code == LC_ACCESS_DENIED
    with store.reader() as conn:
        assert current_status(conn, inv) == "203"


def test_operators_see_the_history(store: Store, tmp_path: Path) -> None:
    refused = add_invoice(store, "seller-co", "F-1")
    add_invoice(store, "seller-co", "F-2")
    with store.transaction() as conn:
        for code in ("200", "203"):
            record_status(conn, refused, code, actor="platform")
        record_status(conn, refused, "210", actor="recipient", reason_code="TX_TVA_ERR", partner="buyer-co")
    rows = queries.list_invoices(store, status="210")
    assert [r["id"] for r in rows] == [refused] and rows[0]["lifecycle_status"] == "210"
    assert len(queries.list_invoices(store, status="accepted")) == 2
    assert queries.list_invoices(store, status="212") == []
    assert " 210 " in format_invoices(rows)
    detail = queries.get_invoice(store, refused)
    assert detail is not None
    assert [s["code"] for s in detail["lifecycle"]] == ["200", "203", "210"]
    text = format_invoice(detail)
    assert "lifecycle  210 Refusée" in text and "TX_TVA_ERR" in text and "buyer-co" in text
    assert queries.jsonable(detail)["lifecycle"][2]["at"].startswith("20")
    assert _invoice_status("210") == "210" and _invoice_status("Accepted") == "accepted"
    with pytest.raises(argparse.ArgumentTypeError):
        _invoice_status("299")


def test_gateway_invoice_command(tmp_path: Path) -> None:
    from gateway.commands import monitor
    from gateway.datadir import DataDir

    dd = DataDir(tmp_path / "data")
    assert dd.write_default_config()
    store = Store(dd.database_url(dd.load_config()))
    try:
        store.migrate()
        inv = add_invoice(store, "seller-co", "F-9")
        with store.transaction() as conn:
            record_status(conn, inv, "200", actor="platform")
    finally:
        store.close()
    parser = argparse.ArgumentParser(prog="gateway")
    monitor.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["invoice", str(inv), "--data-dir", str(dd.root)])
    out = io.StringIO()
    assert cmd_invoice(args, out) == 0
    assert "F-9" in out.getvalue() and "200  Déposée" in out.getvalue()
    out = io.StringIO()
    assert (
        cmd_invoice(parser.parse_args(["invoice", str(inv), "--json", "--data-dir", str(dd.root)]), out) == 0
    )
    assert '"code": "200"' in out.getvalue()
    missing = parser.parse_args(["invoice", str(inv + 1), "--data-dir", str(dd.root)])
    assert cmd_invoice(missing, io.StringIO()) == 1
    assert parser.parse_args(["invoices", "--status", "210", "--data-dir", str(dd.root)]).status == "210"
