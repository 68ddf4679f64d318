"""`gateway sftp …` commands: `hash-password` prints the argon2 hash to put in a partner's config."""

from __future__ import annotations

import argparse
import getpass
import sys

from gateway.inbound.sftp_server import hash_password


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `sftp` and its sub-commands to the CLI's sub-parsers."""
    sftp = subparsers.add_parser("sftp", help="embedded SFTP server tools")
    commands = sftp.add_subparsers(dest="sftp_command", required=True)
    hashing = commands.add_parser(
        "hash-password",
        help="print the argon2 hash of a partner password (read from stdin, or prompted on a terminal)",
    )
    hashing.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from stdin even when it is a terminal (first line, newline stripped)",
    )
    hashing.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "sftp_command", None) != "hash-password":
        print("usage: gateway sftp hash-password", file=sys.stderr)
        return 2
    if sys.stdin.isatty() and not getattr(args, "stdin", False):
        password = getpass.getpass("Partner password: ")
        if password != getpass.getpass("Again: "):
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0
