"""`gateway identify FILE... [--json]`: show what the gateway sees in files (syntax, profile, invoices)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.errors import IdentifyError
from gateway.model import Identification, ReasonCode
from gateway.transforms.identify import Identifier

_SUMMARY_LABELS = (
    ("number", "number"),
    ("type_code", "type"),
    ("issue_date", "issue date"),
    ("currency", "currency"),
    ("seller_name", "seller"),
    ("seller_siret", "seller SIRET"),
    ("seller_siren", "seller SIREN"),
    ("seller_vat_id", "seller VAT id"),
    ("buyer_name", "buyer"),
    ("buyer_siret", "buyer SIRET"),
    ("service_code", "service code"),
    ("engagement_number", "engagement"),
    ("billing_framework", "framework"),
    ("total_net", "total net"),
    ("total_vat", "total VAT"),
    ("total_gross", "total gross"),
    ("amount_due", "amount due"),
    ("line_count", "lines"),
    ("attachment_count", "attachments"),
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("identify", help="identify flows: syntax, syntax code, profile, invoices")
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=run)


def _identification_dict(result: Identification) -> dict[str, Any]:
    return {
        "syntax": str(result.syntax),
        "syntax_code": result.syntax_code,
        "profile": result.profile,
        "invoices": [
            {
                "item": doc.item,
                "syntax": str(doc.syntax),
                "profile": doc.profile,
                "container": doc.container,
                "facturx_level": doc.facturx_level,
                "error": doc.error.to_dict() if doc.error else None,
                "summary": doc.summary.to_dict(),
            }
            for doc in result.invoices
        ],
    }


def _identify_file(identifier: Identifier, path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": str(path)}
    try:
        data = path.read_bytes()
    except OSError as exc:
        entry["error"] = {"reason": "UNREADABLE", "message": f"cannot read file: {exc.strerror or exc}"}
        return entry
    if not data:
        entry["error"] = {"reason": str(ReasonCode.EMPTY_FLOW), "message": "file is empty"}
        return entry
    try:
        entry.update(_identification_dict(identifier.identify(data, path.name)))
    except IdentifyError as exc:
        entry["error"] = {"reason": str(exc.reason), "message": exc.message}
    except Exception as exc:  # the command must never crash on an input; report it instead
        entry["error"] = {"reason": "INTERNAL", "message": f"{type(exc).__name__}: {exc}"}
    return entry


def _print_text(entries: list[dict[str, Any]]) -> None:
    width = max(len(label) for _, label in _SUMMARY_LABELS) + 2
    for entry in entries:
        print(f"{entry['file']}")
        if "error" in entry:
            print(f"  {'rejected':<{width}}{entry['error']['reason']}: {entry['error']['message']}")
            continue
        print(f"  {'syntax':<{width}}{entry['syntax']}")
        print(f"  {'syntax code':<{width}}{entry['syntax_code']}")
        print(f"  {'profile':<{width}}{entry['profile'] or '-'}")
        for doc in entry["invoices"]:
            print(
                f"  invoice {doc['item']} ({doc['syntax']}"
                + (f", Factur-X {doc['facturx_level']}" if doc["facturx_level"] else "")
                + ")"
            )
            if doc["error"]:
                print(f"    {'error':<{width}}{doc['error']['rule_id']}: {doc['error']['message']}")
            for key, label in _SUMMARY_LABELS:
                value = doc["summary"].get(key)
                if value not in (None, ""):
                    print(f"    {label:<{width}}{value}")


def run(args: argparse.Namespace) -> int:
    identifier = Identifier()
    entries = [_identify_file(identifier, Path(path)) for path in args.files]
    if args.json:
        json.dump({"files": entries}, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _print_text(entries)
    ok = all(
        "error" not in entry and all(doc["error"] is None for doc in entry["invoices"]) for entry in entries
    )
    return 0 if ok else 1
