"""`gateway rules list | show ID | install PATH_OR_ZIP | remove ID` — manage validation rule packs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from gateway.validation.rulepacks import RulePack, RulePackError, RulePackRegistry


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--rules-dir", type=Path, default=None, help="folder of installed packs (default <data dir>/rules)"
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./gateway-data"),
        help="gateway data directory (default ./gateway-data)",
    )
    rules = subparsers.add_parser("rules", help="list, show, install or remove validation rule packs")
    commands = rules.add_subparsers(dest="rules_command", required=True)
    listing = commands.add_parser("list", parents=[common], help="builtin and installed packs")
    listing.add_argument("--json", action="store_true")
    show = commands.add_parser("show", parents=[common], help="one pack: layers, files and SHA-256")
    show.add_argument("pack_id", help="id or id@version")
    show.add_argument("--json", action="store_true")
    install = commands.add_parser("install", parents=[common], help="install a pack folder or zip")
    install.add_argument("path", type=Path)
    remove = commands.add_parser(
        "remove", parents=[common], help="remove an installed pack (id or id@version)"
    )
    remove.add_argument("pack_id")
    for parser in (listing, show, install, remove):
        parser.set_defaults(func=run)


def _rules_dir(args: argparse.Namespace) -> Path | None:
    if getattr(args, "rules_dir", None) is not None:
        return Path(args.rules_dir)
    data_dir = getattr(args, "data_dir", None)
    return Path(data_dir) / "rules" if data_dir is not None else None


def _line(pack: RulePack) -> str:
    return f"{pack.id:<22} {pack.version:<16} {pack.kind:<9} {', '.join(sorted(pack.layers))}"


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    registry = RulePackRegistry(_rules_dir(args))
    command = args.rules_command
    try:
        if command == "list":
            packs = registry.list()
            if args.json:
                json.dump([p.to_dict() for p in packs], stream, indent=2)
                stream.write("\n")
            else:
                stream.write(f"{'id':<22} {'version':<16} {'kind':<9} layers\n")
                for pack in packs:
                    stream.write(_line(pack) + "\n")
            for problem in registry.problems:
                sys.stderr.write(f"warning: unreadable pack folder {problem}\n")
            return 0
        if command == "show":
            pack = registry.get(args.pack_id)
            if args.json:
                json.dump(pack.to_dict(), stream, indent=2)
                stream.write("\n")
                return 0
            stream.write(f"id:       {pack.id}\nversion:  {pack.version} ({pack.version_source})\n")
            stream.write(f"kind:     {pack.kind}\nroot:     {pack.root}\n")
            stream.write(f"about:    {pack.description}\nlicense:  {pack.license or '-'}\n")
            for role, rel in sorted(pack.layers.items()):
                stream.write(f"layer {role}: {rel}  sha256:{pack.sha256_of(rel)}\n")
            stream.write(f"files ({len(pack.files)}):\n")
            for item in pack.files:
                stream.write(f"  {item.sha256}  {item.path}\n")
            return 0
        if command == "install":
            pack = registry.install(args.path)
            stream.write(f"installed {pack.ref} in {pack.root}\n")
            return 0
        if command == "remove":
            removed = registry.remove(args.pack_id)
            for pack in removed:
                stream.write(f"removed {pack.ref}\n")
            return 0
    except (RulePackError, OSError) as exc:
        sys.stderr.write(f"rules {command}: {exc}\n")
        return 1
    sys.stderr.write("usage: gateway rules list|show ID|install PATH|remove ID\n")
    return 2
