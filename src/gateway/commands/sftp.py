"""`gateway sftp …` commands.

* `hash-password` prints the argon2 hash to put in a partner's config;
* `fingerprint` prints the SFTP host key's SHA256 fingerprint as OpenSSH shows it, for partners to
  check on their first connection (the key is generated first if the server never started).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from gateway.inbound.sftp_auth import hash_password
from gateway.inbound.sftp_hostkey import HostKeyError, fingerprint, load_or_create_host_key


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
    printing = commands.add_parser(
        "fingerprint",
        help="print the SFTP host key's SHA256 fingerprint (as `ssh` shows it) to give to partners",
    )
    from gateway.cli import add_data_dir

    add_data_dir(printing)
    printing.set_defaults(func=run_fingerprint)


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


def run_fingerprint(args: argparse.Namespace) -> int:
    from gateway.datadir import DataDir
    from gateway.runtime.sftp_service import host_key_path

    data_dir = DataDir(args.data_dir.resolve())
    if not data_dir.config_file.exists():
        print(f"{data_dir.config_file}: no configuration here; is --data-dir right?", file=sys.stderr)
        return 2
    path = host_key_path(data_dir, data_dir.load_config())
    try:
        if not path.exists():
            load_or_create_host_key(path)
            print(f"generated the SFTP host key {path}", file=sys.stderr)
        print(fingerprint(path))
    except (HostKeyError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0
