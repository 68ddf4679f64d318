"""`gateway doctor`: checks store ↔ spool ↔ out/ consistency on a live install; reads, never writes.

What it looks for (issue 16, fault suite):
* flows whose blob is missing (unfinished flows always; finished ones unless `retention.blob_days` may
  have purged it);
* finished flows (ACKNOWLEDGED, REJECTED) that never had an acknowledgement, whose acknowledgement's
  outbox row is dead, or whose acknowledgement file is not in out/ once sent (a partner that fetches over
  SFTP deletes its acks: a note for it; `retention.ack_days` may also have purged it); an
  acknowledgement still pending in the outbox is a note;
* claims left in spool/claim and half-written blobs in spool/tmp older than a minute, `.part` files in
  out/ older than a minute;
* acknowledgements in out/ whose flow the store does not know;
* leases held by processes that are gone (same host, pid not alive), or expired leases.

Prints one line per finding and a summary; exit 0 when clean, 1 when a problem was found (notes alone
keep it clean). Whether a `gateway run` holds the data dir is shown (and used: without a daemon, any
lease left is a dead one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.datadir import DataDir
from gateway.statemachine import TERMINAL_STATES, FlowState
from gateway.store.outbox import DEAD, PENDING

LEFTOVER_AGE_SECONDS = 60.0  # claims, tmp blobs and .part files younger than this may be in progress
ACK_NAME = re.compile(r"^(?P<stem>.*)\.(?P<flow_id>\d{8}T\d{9}Z-[0-9a-f]{10})\.ack\.(?:xml|json)$")


@dataclass(frozen=True)
class Finding:
    kind: str  # stable word: blob_missing, ack_never_written, ack_missing, claim_left, tmp_left, …
    detail: str
    problem: bool = True  # False: a note that does not make the install unclean


@dataclass
class Report:
    daemon_pid: int | None
    flows: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.problem]

    @property
    def clean(self) -> bool:
        return not self.problems


def register(subparsers: Any) -> None:
    from gateway.cli import add_data_dir

    doctor = subparsers.add_parser(
        "doctor", help="check store, spool and out/ folders agree (read-only); exit 1 on a problem"
    )
    add_data_dir(doctor)
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.cli import open_store

    data_dir = DataDir(args.data_dir.resolve())
    store = open_store(args.data_dir)
    try:
        report = examine(data_dir, data_dir.load_config(), store)
    finally:
        store.close()
    if args.json:
        body = {"clean": report.clean, "daemon_pid": report.daemon_pid, "flows": report.flows,
                "findings": [asdict(f) for f in report.findings]}  # fmt: skip
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        running = f"running (pid {report.daemon_pid})" if report.daemon_pid else "not running"
        print(f"data dir {data_dir.root}: gateway run {running}; {report.flows} flow(s)")
        for f in report.findings:
            print(f"{'PROBLEM' if f.problem else 'note':<8} {f.kind}: {f.detail}")
        print("doctor: clean" if report.clean else f"doctor: {len(report.problems)} problem(s)")
    return 0 if report.clean else 1


def examine(data_dir: DataDir, config: GatewayConfig, store: Any, now: float | None = None) -> Report:
    """Every check, as data (the CLI prints it; tests assert on it)."""
    from sqlalchemy import select

    from gateway.store.models import FlowRow

    now = now if now is not None else time.time()
    report = Report(daemon_pid=data_dir.run_lock_holder())
    columns = (FlowRow.id, FlowRow.partner, FlowRow.state, FlowRow.sha256, FlowRow.received_at,
               FlowRow.ack_name, FlowRow.completed_at, FlowRow.lease_owner, FlowRow.lease_expires_at, FlowRow.refused_reason)  # fmt: skip
    with store.reader() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(*columns))]
        ack_rows = _ack_outbox_states(conn)
    for r in rows:
        r["ack_outbox"] = ack_rows.get((r["id"], r["ack_name"]))
    report.flows = len(rows)
    known_ids = {r["id"] for r in rows}
    _check_flows(data_dir, config, rows, report, now)
    _check_spool(data_dir, report, now)
    _check_out_folders(data_dir, config, {r["partner"] for r in rows}, known_ids, report, now)
    return report


def _ack_outbox_states(conn: Any) -> dict[tuple[str, str], str]:
    """(flow id, ack name) → state of its newest outbox row (pending, sent, dead)."""
    from sqlalchemy import select

    from gateway.store.models import OutboxRow

    stmt = (
        select(OutboxRow.flow_id, OutboxRow.remote_name, OutboxRow.state)
        .where(OutboxRow.kind == "ack", OutboxRow.flow_id.is_not(None))
        .order_by(OutboxRow.id)
    )
    return {(flow_id, name): state for flow_id, name, state in conn.execute(stmt)}


def _older_than_days(moment: datetime | None, days: int, now: float) -> bool:
    return days > 0 and moment is not None and moment.timestamp() < now - timedelta(days=days).total_seconds()


def _check_flows(
    data_dir: DataDir, config: GatewayConfig, rows: list[dict[str, Any]], report: Report, now: float
) -> None:
    from gateway.store.blobs import BlobStore

    blobs = BlobStore(data_dir.blobs, data_dir.tmp)
    retention = config.retention
    terminal = {s.value for s in TERMINAL_STATES}
    host = config.node_name or os.uname().nodename
    for r in rows:
        finished = r["state"] in terminal
        if r["sha256"] and not blobs.path_for(r["sha256"]).is_file():
            purged = finished and _older_than_days(r["received_at"], retention.blob_days, now)
            if not purged:
                report.findings.append(
                    Finding("blob_missing", f"flow {r['id']} ({r['state']}): blob {r['sha256']}")
                )
        if finished:
            _check_ack(data_dir, config, r, report, now)
        if r["lease_owner"]:
            _check_lease(r, host, report, now)


def _check_ack(
    data_dir: DataDir, config: GatewayConfig, r: dict[str, Any], report: Report, now: float
) -> None:
    if not r["ack_name"]:
        report.findings.append(
            Finding("ack_never_written", f"flow {r['id']} is {r['state']} without an acknowledgement")
        )
        return
    if (data_dir.outbox(config, r["partner"]) / r["ack_name"]).is_file():
        return
    if r["ack_outbox"] == PENDING:  # on its way (out/ may be failing: the outbox retries it)
        report.findings.append(
            Finding("ack_pending", f"flow {r['id']}: {r['ack_name']} not delivered yet", False)
        )
        return
    if r["ack_outbox"] == DEAD:
        report.findings.append(Finding("ack_dead", f"flow {r['id']}: delivery of {r['ack_name']} gave up"))
        return
    if _older_than_days(r["completed_at"], config.retention.ack_days, now):
        return  # purged by retention
    partner = config.partners.get(r["partner"])
    fetched = partner is not None and partner.sftp is not None
    detail = f"flow {r['id']} ({r['state']}): {r['ack_name']} not in out/"
    if fetched:
        detail += " (the partner fetches over SFTP and may have deleted it)"
    report.findings.append(Finding("ack_missing", detail, problem=not fetched))


def _check_lease(r: dict[str, Any], host: str, report: Report, now: float) -> None:
    owner: str = r["lease_owner"]
    node, _, pid_text = owner.rpartition(":")
    if r["state"] in {s.value for s in TERMINAL_STATES} or r["state"] == FlowState.QUARANTINED.value:
        report.findings.append(
            Finding("lease_on_finished_flow", f"flow {r['id']} ({r['state']}) leased by {owner}")
        )
        return
    if node == host and pid_text.isdigit() and not _alive(int(pid_text)):
        report.findings.append(
            Finding("lease_of_dead_process", f"flow {r['id']} leased by {owner}, which is gone")
        )
        return
    expires = r["lease_expires_at"]
    if expires is not None and expires.timestamp() < now:
        report.findings.append(
            Finding("lease_expired", f"flow {r['id']} leased by {owner} until {expires.isoformat()}")
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _check_spool(data_dir: DataDir, report: Report, now: float) -> None:
    if data_dir.claims.is_dir():
        for partner_dir in sorted(p for p in data_dir.claims.iterdir() if p.is_dir()):
            for entry in sorted(partner_dir.iterdir()):
                ages = (
                    [_age(entry, now), *(_age(f, now) for f in entry.iterdir())]
                    if entry.is_dir()
                    else [_age(entry, now)]
                )
                youngest = min(ages)  # a claim being written right now is not left over
                if youngest > LEFTOVER_AGE_SECONDS:
                    report.findings.append(Finding("claim_left", f"{entry} ({youngest:.0f}s old)"))
    if data_dir.tmp.is_dir():
        for entry in sorted(data_dir.tmp.iterdir()):
            if _age(entry, now) > LEFTOVER_AGE_SECONDS:
                report.findings.append(Finding("tmp_left", f"{entry} ({_age(entry, now):.0f}s old)"))


def _check_out_folders(
    data_dir: DataDir, config: GatewayConfig, partners_in_store: set[str], known_ids: set[str],
    report: Report, now: float,
) -> None:  # fmt: skip
    for partner in sorted(set(config.partners) | partners_in_store):
        out = data_dir.outbox(config, partner)
        if not out.is_dir():
            continue
        for entry in sorted(out.iterdir()):
            if entry.name.endswith(".part"):
                if _age(entry, now) > LEFTOVER_AGE_SECONDS:
                    report.findings.append(Finding("part_left", f"{entry} ({_age(entry, now):.0f}s old)"))
                continue
            match = ACK_NAME.match(entry.name)
            if match and match.group("flow_id") not in known_ids:
                report.findings.append(
                    Finding("ack_without_flow", f"{entry}: no flow {match.group('flow_id')}")
                )
