"""`gateway api token create PARTNER | list | revoke ID`: bearer tokens of the Flow Service API.

A token is printed once at creation and only its SHA-256 is stored; a lost token is revoked and
replaced, never recovered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from gateway.cli import add_data_dir

    api = subparsers.add_parser("api", help="Flow Service API (AFNOR XP Z12-013): partner tokens")
    groups = api.add_subparsers(dest="api_command", required=True)
    token = groups.add_parser("token", help="bearer tokens of partners")
    commands = token.add_subparsers(dest="token_command", required=True)

    create = commands.add_parser("create", help="create a token for a partner and print it (once)")
    add_data_dir(create)
    create.add_argument("partner", help="partner id (a [partners.<id>] section)")
    create.add_argument("--label", default="", help="a note to recognise the token in lists")
    create.set_defaults(func=cmd_create)

    listing = commands.add_parser("list", help="list tokens (never the secrets)")
    add_data_dir(listing)
    listing.add_argument("--partner")
    listing.set_defaults(func=cmd_list)

    revoke = commands.add_parser("revoke", help="revoke a token by its id (from `list`)")
    add_data_dir(revoke)
    revoke.add_argument("token_id", type=int)
    revoke.set_defaults(func=cmd_revoke)


def _open(data_dir: Path) -> tuple[object, object]:
    from gateway.cli import open_store
    from gateway.datadir import DataDir

    store = open_store(data_dir)
    config = DataDir(data_dir.resolve()).load_config()
    return store, config


def cmd_create(args: argparse.Namespace) -> int:
    from gateway.api.tokens import create_token
    from gateway.config import GatewayConfig
    from gateway.store.db import Store

    store, config = _open(args.data_dir)
    assert isinstance(store, Store) and isinstance(config, GatewayConfig)
    if args.partner not in config.partners:
        known = ", ".join(config.partners) or "none"
        print(f"no partner {args.partner!r} in the configuration (known: {known})", file=sys.stderr)
        return 1
    with store.transaction() as conn:
        token_id, token = create_token(conn, args.partner, args.label)
    print(token)
    print(
        f"token {token_id} for partner {args.partner}: shown once, only its hash is kept "
        "(send it as 'Authorization: Bearer <token>')",
        file=sys.stderr,
    )
    if not config.api.enabled:
        print("note: [api] enabled = false in gateway.toml; the API is not served yet", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from gateway.api.tokens import list_tokens
    from gateway.store.db import Store

    store, _config = _open(args.data_dir)
    assert isinstance(store, Store)
    with store.reader() as conn:
        rows = list_tokens(conn, args.partner)
    print(f"{'ID':>5}  {'PARTNER':<16} {'TOKEN':<16} {'CREATED':<19} {'REVOKED':<19} LABEL")
    for t in rows:
        revoked = t.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if t.revoked_at else "-"
        print(
            f"{t.id:>5}  {t.partner[:16]:<16} {t.prefix + '…':<16} "
            f"{t.created_at.strftime('%Y-%m-%d %H:%M:%S'):<19} {revoked:<19} {t.label}"
        )
    print(f"({len(rows)} token(s))")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from gateway.api.tokens import revoke_token
    from gateway.store.db import Store

    store, _config = _open(args.data_dir)
    assert isinstance(store, Store)
    with store.transaction() as conn:
        done = revoke_token(conn, args.token_id)
    if not done:
        print(f"no active token {args.token_id}", file=sys.stderr)
        return 1
    print(f"token {args.token_id} revoked")
    return 0
