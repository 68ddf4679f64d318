"""`gateway db upgrade | status`: schema migrations (Alembic), run by an operator, never implicitly."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    from gateway.cli import add_data_dir

    db = sub.add_parser("db", help="database schema: status and upgrade (Alembic migrations)")
    actions = db.add_subparsers(dest="db_command", required=True)
    upgrade = actions.add_parser("upgrade", help="migrate the schema to this gateway's version")
    add_data_dir(upgrade)
    upgrade.set_defaults(func=cmd_upgrade)
    status = actions.add_parser("status", help="show the schema revision and this gateway's revision")
    add_data_dir(status)
    status.set_defaults(func=cmd_status)


def _store(args: argparse.Namespace) -> Any:
    from gateway.datadir import DataDir
    from gateway.errors import ConfigError
    from gateway.store.db import Store

    data_dir = DataDir(args.data_dir.resolve())
    if not data_dir.config_file.exists():
        raise ConfigError(f"{data_dir.config_file}: no configuration here; is --data-dir right?")
    return Store(data_dir.database_url(data_dir.load_config()))


def cmd_upgrade(args: argparse.Namespace) -> int:
    from gateway.store.db import head_revision

    store = _store(args)
    try:
        before = store.migrate()
    finally:
        store.close()
    head = head_revision()
    if before == head:
        print(f"schema already at {head}")
    else:
        print(f"schema upgraded from {before or 'empty'} to {head}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from gateway.store.db import head_revision

    store = _store(args)
    try:
        current = store.current_revision()
    finally:
        store.close()
    head = head_revision()
    state = "up to date" if current == head else "upgrade needed: gateway db upgrade"
    print(f"schema {current or 'empty'}, gateway {head}: {state}")
    return 0 if current == head else 1
