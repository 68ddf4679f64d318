"""`gateway operators add NAME [--role admin|read-only] | list | disable NAME` — web console accounts."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from pathlib import Path

from gateway.console.accounts import ADMIN, ROLES, AccountError, Accounts


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `operators` and its sub-commands to the CLI's sub-parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./gateway-data"),
        help="data directory (default ./gateway-data)",
    )
    operators = subparsers.add_parser("operators", help="accounts of the operators' web console")
    commands = operators.add_subparsers(dest="operators_command", required=True)
    add = commands.add_parser(
        "add",
        parents=[common],
        help="add an operator (password read from stdin, or prompted twice on a terminal)",
    )
    add.add_argument("name")
    add.add_argument(
        "--role", choices=ROLES, default=ADMIN, help="admin acts; read-only looks (default admin)"
    )
    add.add_argument(
        "--replace", action="store_true", help="set a new password or role for an existing operator"
    )
    add.add_argument(
        "--stdin", action="store_true", help="read the password from stdin even when it is a terminal"
    )
    listing = commands.add_parser("list", parents=[common], help="operators, roles and last sign-in")
    disable = commands.add_parser(
        "disable", parents=[common], help="disable an operator and end their sessions"
    )
    disable.add_argument("name")
    for parser in (add, listing, disable):
        parser.set_defaults(func=run)


def _read_password(args: argparse.Namespace) -> str | None:
    if sys.stdin.isatty() and not args.stdin:
        password = getpass.getpass(f"Password for {args.name}: ")
        if password != getpass.getpass("Again: "):
            print("passwords differ", file=sys.stderr)
            return None
        return password
    return sys.stdin.readline().rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    from gateway.cli import open_store

    command = args.operators_command
    store = open_store(args.data_dir)
    try:
        accounts = Accounts(store)
        if command == "add":
            password = _read_password(args)
            if password is None:
                return 1
            try:
                operator = accounts.add(args.name, password, args.role, replace=args.replace)
            except AccountError as exc:
                print(f"operators add: {exc}", file=sys.stderr)
                return 1
            accounts.audit(None, "operator-" + ("replace" if args.replace else "add"), operator.name, "ok",
                           f"role {operator.role} (command line)")  # fmt: skip
            print(f"operator {operator.name} ({operator.role}) {'updated' if args.replace else 'added'}")
            return 0
        if command == "list":
            print(f"{'NAME':<24} {'ROLE':<10} {'ACTIVE':<7} LAST SIGN-IN")
            for row in accounts.list():
                last = row["last_login_at"]
                when = last.strftime("%Y-%m-%d %H:%M:%S") if isinstance(last, datetime) else "-"
                print(f"{row['name']!s:<24} {row['role']!s:<10} {'yes' if row['active'] else 'no':<7} {when}")
            return 0
        if command == "disable":
            if not accounts.disable(args.name):
                print(f"no operator {args.name}", file=sys.stderr)
                return 1
            accounts.audit(None, "operator-disable", args.name, "ok", "command line")
            print(f"operator {args.name} disabled; their sessions ended")
            return 0
    finally:
        store.close()
    print("usage: gateway operators add NAME | list | disable NAME", file=sys.stderr)
    return 2
