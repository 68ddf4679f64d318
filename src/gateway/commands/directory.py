"""`gateway directory import FILE [--replace] | show KEY | list`: the recipient directory (issue 17).

The file formats are described in gateway.transforms.directory_file and the README ("Recipient
directory"). Exit codes of `import`: 0 every line taken, 1 some lines rejected (the others are loaded,
except with --replace where nothing changes), 2 the file cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from gateway.cli import add_data_dir, open_store
from gateway.store.db import utcnow
from gateway.store.directory import DirectoryStore, ImportReport, import_directory
from gateway.transforms.directory_file import DirectoryFileError, parse_directory
from gateway.transforms.route import SYNTAXES, Recipient


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    directory = subparsers.add_parser("directory", help="recipient directory: import, show, list")
    sub = directory.add_subparsers(dest="directory_command", required=True)

    imp = sub.add_parser("import", help="load a CSV or AFNOR Directory Service JSON file (upsert)")
    add_data_dir(imp)
    imp.add_argument("file", type=Path, help="directory file (.csv or .json)")
    imp.add_argument("--replace", action="store_true", help="the file becomes the whole directory")
    imp.add_argument(
        "--format", choices=("csv", "json"), help="default: from the extension, else the content"
    )
    imp.add_argument("--partner", help="JSON only: partner id that receives for the imported lines")
    imp.add_argument("--syntax", choices=SYNTAXES, default="same", help="JSON only: delivery syntax (same)")
    imp.add_argument("--dry-run", action="store_true", help="check and report, change nothing")
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    imp.set_defaults(func=cmd_import)

    show = sub.add_parser(
        "show", help="the lines matching a SIRET, SIREN, routing code or electronic address"
    )
    add_data_dir(show)
    show.add_argument("key")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)

    lst = sub.add_parser("list", help="every directory line")
    add_data_dir(lst)
    lst.add_argument("--partner", help="only the lines this partner receives for")
    lst.add_argument("--limit", type=int, default=None)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)


def _configured_partners(data_dir: Path) -> set[str] | None:
    from gateway.datadir import DataDir

    try:
        return set(DataDir(data_dir.resolve()).load_config().partners)
    except Exception:  # noqa: BLE001 - only used for a warning; open_store reports config errors
        return None


def cmd_import(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"{args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        parsed = parse_directory(
            data, fmt=args.format, filename=args.file.name, partner=args.partner, syntax=args.syntax
        )
    except DirectoryFileError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 2
    store = open_store(args.data_dir, create=True)
    try:
        with store.transaction() as conn:
            report = import_directory(conn, parsed, now=utcnow(), replace=args.replace)
            if args.dry_run:
                conn.rollback()
    finally:
        store.close()
    known = _configured_partners(args.data_dir)
    unknown = sorted({r.partner for r in parsed.recipients if r.partner} - known) if known is not None else []
    if args.json:
        body = report.to_dict() | {"dry_run": args.dry_run, "unconfigured_partners": unknown}
        json.dump(body, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(format_report(args.file.name, report, args.dry_run, unknown))
    return 1 if report.rejected else 0


def format_report(name: str, report: ImportReport, dry_run: bool, unknown_partners: list[str]) -> str:
    counts = report.result.to_dict()
    if not report.applied:
        head = f"{name}: NOT imported (--replace with rejected lines: the directory is unchanged)"
    else:
        verb = "would import" if dry_run else "imported"
        head = (
            f"{name} ({report.format}): {verb} {counts['inserted']} new, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged, {counts['deleted']} deleted"
        )
    lines = [head + f"; {len(report.rejected)} rejected"]
    lines += [f"  rejected {r}" for r in report.rejected]
    if unknown_partners:
        lines.append(f"  warning: partner(s) not in the configuration: {', '.join(unknown_partners)}")
    return "\n".join(lines) + "\n"


def _flag(value: bool) -> str:
    return "yes" if value else "no"


def format_recipient(r: Recipient) -> str:
    services = ", ".join(f"{s.code} ({s.name or '-'}{'' if s.active else ', inactive'})" for s in r.services)
    rows = [
        ("SIREN", r.siren),
        ("SIRET", r.siret or "-"),
        ("routing code", r.routing_code or "-"),
        ("electronic address", r.addressing_id or "-"),
        ("name", r.name or "-"),
        ("active", _flag(r.active)),
        ("service code required (BT-10)", _flag(r.service_code_required)),
        ("engagement required (BT-13)", _flag(r.engagement_required)),
        ("service code or engagement required", _flag(r.service_or_engagement_required)),
        ("services", services or "-"),
        ("partner", r.partner or "- (none: invoices are rejected DEST_INC)"),
        ("syntax", r.syntax),
    ]
    return "\n".join(f"  {label + ':':<38}{value}" for label, value in rows) + "\n"


def _recipients_json(recipients: list[Recipient], out: TextIO) -> None:
    body: list[dict[str, Any]] = [r.to_dict() for r in recipients]
    json.dump(body, out, indent=2, ensure_ascii=False)
    out.write("\n")


def cmd_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = open_store(args.data_dir)
    try:
        with store.reader() as conn:
            found = DirectoryStore(conn).find(args.key)
    finally:
        store.close()
    if args.json:
        _recipients_json(found, out)
        return 0 if found else 1
    if not found:
        print(f"{args.key}: not in the directory", file=sys.stderr)
        return 1
    for r in found:
        out.write(f"{r.key}\n{format_recipient(r)}")
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = open_store(args.data_dir)
    try:
        with store.reader() as conn:
            rows = DirectoryStore(conn).all(partner=args.partner, limit=args.limit)
    finally:
        store.close()
    if args.json:
        _recipients_json(rows, out)
        return 0
    header = f"{'SIREN':<9} {'SIRET':<14} {'ROUTING CODE':<16} {'ADDRESS':<16} {'ACT':<3} {'REQ':<5} "
    header += f"{'PARTNER':<12} {'SYNTAX':<7} NAME"
    lines = [header]
    for r in rows:
        req = ("S" if r.service_code_required else "-") + ("E" if r.engagement_required else "-")
        req += "O" if r.service_or_engagement_required else "-"
        lines.append(
            f"{r.siren:<9} {r.siret or '-':<14} {_cut(r.routing_code, 16):<16} {_cut(r.addressing_id, 16):<16} "
            f"{'yes' if r.active else 'no':<3} {req:<5} {_cut(r.partner, 12):<12} {r.syntax:<7} {r.name}".rstrip()
        )
    lines.append(f"{len(rows)} line(s)")
    out.write("\n".join(lines) + "\n")
    return 0


def _cut(value: str | None, width: int) -> str:
    text = value or "-"
    return text if len(text) <= width else text[: width - 1] + "…"
