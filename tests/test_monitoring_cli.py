"""`gateway invoices` and `gateway stats` on a real data dir (gateway.toml + SQLite store)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.commands import monitor
from gateway.datadir import DataDir
from gateway.statemachine import FlowState
from gateway.store.db import InvoiceRecord, Store, new_flow_id


def _parser() -> argparse.ArgumentParser:
    """The real `gateway` parser once the lead registered the module; until then the same sub-commands alone."""
    if "gateway.commands.monitor" in cli.COMMAND_MODULES:
        return cli.build_parser()
    parser = argparse.ArgumentParser(prog="gateway")
    monitor.register(parser.add_subparsers(dest="command", required=True))
    return parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = _parser().parse_args(list(argv))
    code = int(args.func(args) or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _flow(store: Store, partner: str, age: timedelta, now: datetime) -> Any:
    flow_id = new_flow_id(now - age)
    store.record_received(
        flow_id=flow_id, partner=partner, source="sftp", filename=f"{partner}-{age.total_seconds():.0f}.xml",
        size=10, sha256=flow_id.encode().hex()[:64].ljust(64, "0"), received_at=now - age, worker="t",
    )  # fmt: skip
    flow = store.claim_next("w", 60)
    assert flow is not None and flow.id == flow_id
    return flow


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir with the default configuration and three flows: two today, one last week."""
    dd = DataDir(tmp_path / "data")
    assert dd.write_default_config()
    store = Store(dd.database_url(dd.load_config()))
    store.migrate()
    now = datetime.now(UTC)
    ok = _flow(store, "acme", timedelta(hours=1), now)
    store.advance(ok, FlowState.RECEIVED, FlowState.VALIDATED, worker="w", stage="validate", invoices=[
        InvoiceRecord(1, "i1.xml", "cii", None, {"number": "F-2024-001", "seller_siret": "12345678200010",
                      "total_gross": "1200.00", "currency": "EUR"}, "accepted", None, None, {"outcome": "valid"}),
        InvoiceRecord(2, "i2.xml", "cii", None, {"number": "F-2024-002", "currency": "EUR"}, "rejected",
                      "REJ_SEMAN", "BR-CO-10: sum of lines", {"outcome": "invalid"}),
    ])  # fmt: skip
    store.advance(ok, FlowState.VALIDATED, FlowState.ACKNOWLEDGED, worker="w", stage="ack", release=True)
    bad = _flow(store, "globex", timedelta(minutes=10), now)
    store.advance(bad, FlowState.RECEIVED, FlowState.REJECTED, worker="w", stage="identify", release=True,
                  values={"reason_code": "IRR_VID_F", "reason_message": "the file is empty"})  # fmt: skip
    old = _flow(store, "acme", timedelta(days=6), now)
    store.advance(old, FlowState.RECEIVED, FlowState.VALIDATED, worker="w", stage="validate", invoices=[
        InvoiceRecord(1, "old.xml", "ubl-invoice", None, {"number": "OLD-1"}, "accepted", None, None, None),
    ], release=True)  # fmt: skip
    store.close()
    return dd.root


def test_invoices_json(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "invoices", "--data-dir", str(data_dir), "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["number"], r["status"], r["partner"]) for r in rows] == [
        ("F-2024-001", "accepted", "acme"), ("F-2024-002", "rejected", "acme"), ("OLD-1", "accepted", "acme"),
    ]  # fmt: skip
    datetime.fromisoformat(rows[0]["received_at"])


@pytest.mark.parametrize(
    "filters, numbers",
    [
        (["--status", "rejected"], ["F-2024-002"]),
        (["--status", "ACCEPTED"], ["F-2024-001", "OLD-1"]),
        (["--number", "OLD-1"], ["OLD-1"]),
        (["--partner", "globex"], []),
        (["--since", "24h"], ["F-2024-001", "F-2024-002"]),
        (["--limit", "1"], ["F-2024-001"]),
    ],
)
def test_invoices_filters(
    capsys: pytest.CaptureFixture[str], data_dir: Path, filters: list[str], numbers: list[str]
) -> None:
    code, out, _ = run(capsys, "invoices", "--data-dir", str(data_dir), "--json", *filters)
    assert code == 0 and [r["number"] for r in json.loads(out)] == numbers


def test_invoices_text_is_aligned(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "invoices", "--data-dir", str(data_dir))
    lines = out.splitlines()
    assert code == 0 and lines[-1] == "(3 invoice(s))"
    header, rows = lines[0], lines[1:-1]
    assert header.split()[:4] == ["ID", "RECEIVED", "PARTNER", "FLOW"]
    status_col = header.index("STATUS")
    number_col = header.index("NUMBER")
    assert [r[status_col:].split()[0] for r in rows] == ["accepted", "rejected", "accepted"]
    assert [r[number_col:].split()[0] for r in rows] == ["F-2024-001", "F-2024-002", "OLD-1"]
    assert rows[1].endswith("REJ_SEMAN: BR-CO-10: sum of lines")


def test_stats_json_counts_the_period(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "stats", "--data-dir", str(data_dir), "--json")  # default: last 24 h
    assert code == 0
    data = json.loads(out)
    assert data["flows"]["total"] == 2
    assert data["flows"]["by_partner"] == {
        "acme": {"total": 1, "by_state": {"ACKNOWLEDGED": 1}},
        "globex": {"total": 1, "by_state": {"REJECTED": 1}},
    }
    assert data["invoices"]["by_status"] == {"accepted": 1, "rejected": 1}
    assert data["rejection_reasons"] == {"flows": {"IRR_VID_F": 1}, "invoices": {"REJ_SEMAN": 1}}
    since = datetime.fromisoformat(data["since"])
    assert abs((datetime.now(UTC) - since) - timedelta(hours=24)) < timedelta(minutes=1)
    _, out, _ = run(capsys, "stats", "--data-dir", str(data_dir), "--json", "--since", "7d")
    week = json.loads(out)
    assert week["flows"]["total"] == 3 and week["flows"]["by_state"]["VALIDATED"] == 1


def test_stats_text(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "stats", "--data-dir", str(data_dir), "--since", "7d")
    assert code == 0
    assert out.startswith("Flows received from ") and ": 3" in out.splitlines()[0]
    lines = out.splitlines()
    partner_header = next(i for i, line in enumerate(lines) if line.startswith("PARTNER"))
    acme = lines[partner_header + 1].split()
    globex = lines[partner_header + 2].split()
    # PARTNER FLOWS ACKED REJECTED PENDING QUARANT. INVOICES ACCEPTED REJECTED
    assert acme == ["acme", "2", "1", "0", "1", "0", "3", "2", "1"]
    assert globex == ["globex", "1", "0", "1", "0", "0", "0", "0", "0"]
    assert any(line.split() == ["flow", "IRR_VID_F", "1"] for line in lines)
    assert any(line.split() == ["invoice", "REJ_SEMAN", "1"] for line in lines)
    assert any(line.split() == ["QUARANTINED", "0"] for line in lines)  # every state listed


def test_stats_on_an_empty_period(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "stats", "--data-dir", str(data_dir), "--since", "2099-01-01")
    assert code == 0 and "(no flow in this period)" in out and "(none)" in out


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    for argv in (
        ["stats", "--since", "soon"],
        ["invoices", "--limit", "0"],
        ["invoices", "--status", "lost"],
    ):
        with pytest.raises(SystemExit) as exc:
            _parser().parse_args([*argv, "--data-dir", str(data_dir)])
        assert exc.value.code == 2
    capsys.readouterr()


def test_missing_data_dir_is_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="no configuration here"):
        run(capsys, "stats", "--data-dir", str(tmp_path / "nowhere"))
