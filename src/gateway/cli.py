"""Command line: `gateway run | check-config | flows | flow ID | replay ID | …` (see README)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.errors import ConfigError, GatewayError, SchemaError
from gateway.timeparse import parse_since

DEFAULT_DATA_DIR = "./gateway-data"
# Sub-command modules, each with register(subparsers); listed explicitly, never discovered by import.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.commands.identify",
    "gateway.commands.validate",
    "gateway.commands.rules",
    "gateway.commands.sftp",
    "gateway.commands.monitor",
    "gateway.commands.db",
    "gateway.commands.deliveries",
    "gateway.commands.directory",
    "gateway.commands.as2",
    "gateway.commands.api",
    "gateway.commands.doctor",
    "gateway.commands.purge",
    "gateway.commands.operators",
)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help=f"data directory (default {DEFAULT_DATA_DIR})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="EDI flow gateway for French e-invoicing")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway daemon (creates the data dir on first start)")
    add_data_dir(run)
    run.add_argument(
        "--demo", action="store_true", help="also drop a few sample invoices for the demo partner"
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate gateway.toml and print clear messages")
    add_data_dir(check)
    check.add_argument("--file", type=Path, help="config file to check (default <data dir>/gateway.toml)")
    check.set_defaults(func=cmd_check_config)

    flows = sub.add_parser("flows", help="list flows (newest first)")
    add_data_dir(flows)
    flows.add_argument("--partner")
    flows.add_argument("--state", help="RECEIVED, ACKNOWLEDGED, REJECTED, FAILED, QUARANTINED, …")
    flows.add_argument("--since", type=parse_since, help="24h, 30m, 7d or an ISO date")
    flows.add_argument("--limit", type=int, default=50)
    flows.add_argument("--json", action="store_true")
    flows.set_defaults(func=cmd_flows)

    flow = sub.add_parser("flow", help="one flow's whole history, invoices and verdicts")
    add_data_dir(flow)
    flow.add_argument("flow_id")
    flow.add_argument("--json", action="store_true")
    flow.set_defaults(func=cmd_flow)

    replay = sub.add_parser("replay", help="send a QUARANTINED flow through the pipeline again")
    add_data_dir(replay)
    replay.add_argument("flow_id")
    replay.set_defaults(func=cmd_replay)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at interpreter exit
        return code
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"database: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:  # DataDirBusy and friends: one line, no traceback
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gateway flows | head`: the reader left; say nothing more
        _silence_stdout()
        return 141
    except OSError as exc:  # a read-only or full data dir, a missing folder: name the path
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gateway: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError):
            raise
        first_line = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
        print(f"gateway: database error: {first_line}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# -- run ------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import build_gateway, drop_demo_files
    from gateway.datadir import DAEMON_UMASK, DataDir

    os.umask(DAEMON_UMASK)  # files 0600, folders 0700 unless made otherwise on purpose (datadir.py)
    data_dir = DataDir(args.data_dir.resolve())
    data_dir.create_root()
    run_lock = data_dir.lock_for_run()  # before anything else: recovery assumes it is alone
    try:
        created = data_dir.write_default_config()
        gateway = build_gateway(data_dir)
        if created:
            gateway.log.info("first start: wrote default configuration", path=str(data_dir.config_file))
        if args.demo:
            gateway.prepare()
            run_tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            for path in drop_demo_files(
                data_dir.inbox(gateway.config, "demo") if "demo" in gateway.config.partners else None, run_tag
            ):
                gateway.log.info("demo file dropped", file=path.name)
        return gateway.run_forever()
    finally:
        os.close(run_lock)


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import load_config_file

    path = args.file or (args.data_dir / "gateway.toml")
    from gateway.config import exposure_warnings

    config = load_config_file(path)
    print(f"{path}: OK ({len(config.partners)} partner(s): {', '.join(config.partners) or 'none'})")
    for warning in exposure_warnings(config):
        print(f"warning: {warning}")
    return 0


# -- monitoring -----------------------------------------------------------------------------------
def open_store(data_dir: Path, *, create: bool = False) -> Any:
    """The data dir's store, at this gateway's schema: never migrated here.

    `create`: a command that writes (directory import) may create the schema of an empty database,
    as a first `gateway run` would; an older schema always waits for `gateway db upgrade`.
    """
    from gateway.datadir import DataDir
    from gateway.store.db import Store

    dd = DataDir(data_dir.resolve())
    if not dd.config_file.exists():
        raise ConfigError(f"{dd.config_file}: no configuration here; is --data-dir right?")
    store = Store(dd.database_url(dd.load_config()))
    if create and store.current_revision() is None:
        store.migrate()
    store.check_schema()
    return store


def _short_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def cmd_flows(args: argparse.Namespace) -> int:
    from gateway.store import queries

    store = open_store(args.data_dir)
    state = queries.parse_state(args.state) if args.state else None
    rows = queries.list_flows(store, partner=args.partner, state=state, since=args.since, limit=args.limit)
    if args.json:
        print(json.dumps(queries.jsonable(rows), indent=2, ensure_ascii=False))
        return 0
    print(
        f"{'FLOW':<31} {'RECEIVED':<19} {'PARTNER':<12} {'STATE':<12} {'SYNTAX':<24} {'INV':>7}  FILE / REASON"
    )
    invoice_reasons = _invoice_reasons(store, [r["id"] for r in rows if r["invoices_rejected"]])
    for r in rows:
        counts = f"{r['invoices_accepted']}/{r['invoice_count']}"
        codes = [r["reason_code"]] if r["reason_code"] else invoice_reasons.get(r["id"], [])
        reason = f"  [{', '.join(codes)}]" if codes else ""
        print(
            f"{r['id']:<31} {_short_time(r['received_at']):<19} {r['partner'][:12]:<12} {r['state']:<12} "
            f"{(r['syntax_code'] or '-')[:24]:<24} {counts:>7}  {r['filename']}{reason}"
        )
    print(f"({len(rows)} flow(s))")
    return 0


def _invoice_reasons(store: Any, flow_ids: list[str]) -> dict[str, list[str]]:
    """The distinct reason codes of the rejected invoices of each flow (REJ_SEMAN, REJ_UNI…)."""
    if not flow_ids:
        return {}
    from sqlalchemy import select

    from gateway.store.models import InvoiceRow
    from gateway.store.queries import read_connection

    stmt = (
        select(InvoiceRow.flow_id, InvoiceRow.reason_code)
        .where(InvoiceRow.flow_id.in_(flow_ids), InvoiceRow.reason_code.is_not(None))
        .distinct()
        .order_by(InvoiceRow.flow_id, InvoiceRow.reason_code)
    )
    found: dict[str, list[str]] = {}
    with read_connection(store) as conn:
        for flow_id, code in conn.execute(stmt):
            found.setdefault(flow_id, []).append(str(code))
    return found


def cmd_flow(args: argparse.Namespace) -> int:
    from gateway.store import queries

    store = open_store(args.data_dir)
    detail = queries.get_flow_detail(store, args.flow_id)
    if detail is None:
        print(f"no flow {args.flow_id}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(queries.jsonable(detail), indent=2, ensure_ascii=False))
        return 0
    flow, events, invoices = detail["flow"], detail["events"], detail["invoices"]
    for key in ("id", "partner", "source", "filename", "size", "sha256", "received_at", "state", "syntax",
                "syntax_code", "profile", "chorus_status", "ack_status", "ack_name", "reason_code",
                "reason_message", "duplicate_of", "attempts", "completed_at"):  # fmt: skip
        if flow.get(key) not in (None, ""):
            value = flow[key]
            print(f"{key:>15}: {_short_time(value) if isinstance(value, datetime) else value}")
    print("\nhistory:")
    for e in events:
        took = f" {e['duration_ms']:.1f} ms" if e["duration_ms"] is not None else ""
        print(f"  {e['at'].isoformat(timespec='milliseconds')}  {e['from_state'] or '-':>12} → {e['to_state']:<12}"
              f" [{e['stage'] or '-'}]{took}  {e['reason'] or ''}  ({e['worker']})")  # fmt: skip
    if invoices:
        print("\ninvoices:")
        for inv in invoices:
            print(f"  #{inv['seq']} {inv['item']}: {inv['status']}  number={inv['number']} seller={inv['seller_siret']}"
                  f" buyer={inv['buyer_siret']} total={inv['total_gross']} {inv['currency'] or ''}")  # fmt: skip
            if inv["reason_message"]:
                print(f"      {inv['reason_code']}: {inv['reason_message']}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from gateway.statemachine import FlowState
    from gateway.store import queries

    store = open_store(args.data_dir)
    detail = queries.get_flow_detail(store, args.flow_id)
    flow = detail["flow"] if detail else None
    if flow is None:
        print(f"no flow {args.flow_id}", file=sys.stderr)
        return 1
    # the state is checked again inside the transaction that moves the flow (a worker may hold it)
    if not store.quarantine_or_replay(
        args.flow_id, FlowState.RECEIVED, "operator", "replayed by operator", expected=FlowState.QUARANTINED
    ):
        state = (queries.get_flow_detail(store, args.flow_id) or {"flow": {"state": "?"}})["flow"]["state"]
        print(f"flow {args.flow_id} is {state}; only QUARANTINED flows are replayed", file=sys.stderr)
        return 1
    print(f"flow {args.flow_id} is RECEIVED again; a running gateway takes it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
