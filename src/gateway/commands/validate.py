"""`gateway validate FILE...`: validate invoices offline; exit code = number of rejected files (max 125).

A file is rejected when it cannot be identified or when any invoice it carries is `invalid` or
`not_validated`. XML, Factur-X PDF, ZIP and flat files are read through the identifier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from gateway.errors import GatewayError
from gateway.validation.plan import ValidationConfig
from gateway.validation.report import ValidationReport

MAX_EXIT_CODE = 125


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "validate", help="validate invoice files (XML, Factur-X PDF, ZIP, flat); exit code = files rejected"
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--format", choices=("text", "json", "svrl"), default="text")
    parser.add_argument(
        "--rules-dir", type=Path, default=None, help="installed rule packs (default: builtin only)"
    )
    parser.add_argument("--partner", default="", help="apply this partner's validation overrides")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./gateway-data"),
        help="use this gateway's installed rule packs and [validation] plan when it exists (default ./gateway-data)",
    )
    parser.add_argument("--no-br-fr", action="store_true", help="skip the French BR-FR rules")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="validate in N worker processes with per-document timeouts (default 0: in this process)",
    )
    parser.set_defaults(func=run)


def _data_dir_config(args: argparse.Namespace) -> ValidationConfig | None:
    """The validation plan of the data dir's gateway.toml, when there is one."""
    data_dir = getattr(args, "data_dir", None)
    if data_dir is None or not (Path(data_dir) / "gateway.toml").is_file():
        return None
    from gateway.config import load_config_file

    return load_config_file(Path(data_dir) / "gateway.toml").validation


def _config(args: argparse.Namespace) -> ValidationConfig:
    base = getattr(args, "validation_config", None) or _data_dir_config(args)
    config = base if isinstance(base, ValidationConfig) else ValidationConfig()
    if args.no_br_fr:
        config = config.model_copy(update={"br_fr": False})
    if args.workers:
        config = config.model_copy(update={"workers": args.workers})
    return config


def _rules_dir(args: argparse.Namespace) -> Path | None:
    if args.rules_dir is not None:
        return Path(args.rules_dir)
    data_dir = getattr(args, "data_dir", None)
    return Path(data_dir) / "rules" if data_dir is not None else None


def _documents(path: Path, identifier: Any) -> list[tuple[str, Any]]:
    """(item name, InvoiceDocument) pairs; raises GatewayError when the file is unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GatewayError(f"cannot read {path}: {exc.strerror or exc}") from None
    identification = identifier.identify(data, path.name)
    return [(doc.item, doc) for doc in identification.invoices]


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from gateway.transforms.identify import Identifier
    from gateway.validation.rulepacks import RulePackRegistry

    stream = out or sys.stdout
    config = _config(args)
    rules_dir = _rules_dir(args)
    identifier = Identifier(limits=None)
    if args.workers:
        from gateway.validation.pool import ValidationPool

        validator: Any = ValidationPool(config, rules_dir)
    else:
        from gateway.validation.engine import ValidationEngine

        validator = ValidationEngine(config, RulePackRegistry(rules_dir))
    rejected = 0
    results: list[dict[str, Any]] = []
    try:
        for path in args.files:
            file_ok = True
            try:
                documents = _documents(path, identifier)
            except GatewayError as exc:
                file_ok = False
                results.append(
                    {"file": str(path), "item": None, "outcome": "unreadable", "message": str(exc)}
                )
                _emit_error(stream, args.format, path, str(exc))
                rejected += 1
                continue
            for item, doc in documents:
                if doc.error is not None:
                    file_ok = False
                    message = f"[{doc.error.rule_id}] {doc.error.message}"
                    results.append(
                        {"file": str(path), "item": item, "outcome": "unreadable", "message": message}
                    )
                    _emit_error(stream, args.format, path, message, item)
                    continue
                report: ValidationReport = validator.validate(
                    doc.xml, doc.syntax, doc.profile, doc.container, args.partner
                )
                file_ok = file_ok and report.accepted
                entry = {"file": str(path), "item": item, "syntax": str(doc.syntax), "profile": doc.profile}
                results.append({**entry, **report.to_dict()})
                _emit_report(stream, args.format, path, item, doc, report)
            if not file_ok:
                rejected += 1
    finally:
        close = getattr(validator, "close", None)
        if close is not None:
            close()
    if args.format == "json":
        json.dump({"rejected_files": rejected, "results": results}, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    elif args.format == "text":
        stream.write(f"{len(args.files)} file(s), {rejected} rejected\n")
    return min(rejected, MAX_EXIT_CODE)


def _emit_error(stream: TextIO, fmt: str, path: Path, message: str, item: str | None = None) -> None:
    if fmt == "json":
        return
    where = f"{path}" + (f" [{item}]" if item and item != path.name else "")
    if fmt == "svrl":
        sys.stderr.write(f"{where}: rejected: {message}\n")
        return
    stream.write(f"{where}: rejected (unreadable): {message}\n")


def _emit_report(stream: TextIO, fmt: str, path: Path, item: str, doc: Any, report: ValidationReport) -> None:
    if fmt == "json":
        return
    if fmt == "svrl":
        stream.write(report.to_svrl().decode("utf-8"))
        return
    where = f"{path}" + (f" [{item}]" if item != path.name else "")
    stream.write(f"{where}: {doc.syntax} {doc.profile or '(no profile)'}\n")
    for line in report.summary_text().splitlines():
        stream.write(f"  {line}\n")
