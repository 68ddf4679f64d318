"""`gateway purge [--dry-run]`: deletes what `[retention]` allows, never what unfinished work needs.

* acknowledgements (`*.ack.xml`, `*.ack.json`) in the partners' out/ folders whose file is older than
  `retention.ack_days`;
* blobs in spool/blobs when every flow holding that content was received more than
  `retention.blob_days` ago — and never a blob that is still needed (`needed_blobs`): the content of
  every flow that is not finished (any state but ACKNOWLEDGED and REJECTED: a QUARANTINED flow may be
  replayed), and the payload of every outbox row not yet delivered (pending or dead: a dead row may be
  sent again). A blob no flow refers to at all (left by a crash before its
  flow row committed, whose claim was since recovered under another copy) goes by its file age.

0 days (the default) keeps forever. The decision is computed first (`plan_purge`, no writes), then
carried out; `--dry-run` prints it only. A running daemon is no obstacle: the intake touches a blob's
mtime when new content equals an existing blob (before its flow row commits), and each blob's age is
checked again right before it is deleted, so content received meanwhile keeps its blob.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.datadir import DataDir
from gateway.statemachine import TERMINAL_STATES

ACK_SUFFIXES = (".ack.xml", ".ack.json")
DAY_SECONDS = 86400.0


@dataclass
class PurgePlan:
    acks: list[Path] = field(default_factory=list)
    blobs: list[Path] = field(default_factory=list)
    kept_needed: int = 0  # old blobs kept because unfinished work needs them

    @property
    def total(self) -> int:
        return len(self.acks) + len(self.blobs)


def register(subparsers: Any) -> None:
    from gateway.cli import add_data_dir

    purge = subparsers.add_parser(
        "purge", help="delete old acknowledgements and blobs as [retention] allows (never unfinished work)"
    )
    add_data_dir(purge)
    purge.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    purge.set_defaults(func=cmd_purge)


def cmd_purge(args: argparse.Namespace) -> int:
    from gateway.cli import open_store

    data_dir = DataDir(args.data_dir.resolve())
    config = data_dir.load_config()
    store = open_store(args.data_dir)
    try:
        plan = plan_purge(data_dir, config, store)
        verb = "would delete" if args.dry_run else "deleted"
        blob_limit = time.time() - config.retention.blob_days * DAY_SECONDS
        for path in plan.acks:
            if not args.dry_run:
                path.unlink(missing_ok=True)
            print(f"{verb} {path}")
        for path in list(plan.blobs):
            if not args.dry_run:
                if not _still_old(path, blob_limit):  # taken in again since the plan: keep it
                    plan.blobs.remove(path)
                    continue
                path.unlink(missing_ok=True)
            print(f"{verb} {path}")
    finally:
        store.close()
    retention = config.retention
    print(f"purge: {verb} {len(plan.acks)} acknowledgement(s) (ack_days={retention.ack_days}) and "
          f"{len(plan.blobs)} blob(s) (blob_days={retention.blob_days}); "
          f"{plan.kept_needed} old blob(s) kept for unfinished work")  # fmt: skip
    return 0


def plan_purge(data_dir: DataDir, config: GatewayConfig, store: Any, now: float | None = None) -> PurgePlan:
    """What the retention policy allows to delete now (reads only)."""
    now = now if now is not None else time.time()
    plan = PurgePlan()
    retention = config.retention
    if retention.ack_days > 0:
        limit = now - retention.ack_days * DAY_SECONDS
        for out in _out_folders(data_dir, config, store):
            for entry in sorted(out.iterdir()):
                if entry.name.endswith(ACK_SUFFIXES) and entry.is_file() and entry.stat().st_mtime < limit:
                    plan.acks.append(entry)
    if retention.blob_days > 0:
        limit = now - retention.blob_days * DAY_SECONDS
        candidates = [p for p in _blob_files(data_dir.blobs) if p.stat().st_mtime < limit]
        if candidates:
            newest, needed = _blob_uses(store)
            cutoff = datetime.fromtimestamp(limit, UTC)
            for path in candidates:
                sha = path.name
                if sha in needed:
                    plan.kept_needed += 1
                elif sha not in newest or newest[sha] < cutoff:
                    plan.blobs.append(path)
    return plan


def _still_old(path: Path, limit: float) -> bool:
    try:
        return path.stat().st_mtime < limit
    except FileNotFoundError:
        return False


def _out_folders(data_dir: DataDir, config: GatewayConfig, store: Any) -> list[Path]:
    from sqlalchemy import select

    from gateway.store.models import FlowRow

    with store.reader() as conn:
        partners = set(conn.execute(select(FlowRow.partner).distinct()).scalars())
    folders = {data_dir.outbox(config, p) for p in partners | set(config.partners)}
    return sorted(f for f in folders if f.is_dir())


def _blob_files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in root.glob("??/??/*"):
        if path.is_file() and len(path.name) == 64:
            yield path


def needed_blobs(conn: Any) -> set[str]:
    """Blobs unfinished work needs: unfinished flows' content and undelivered outbox payloads.

    The one place to extend when something else comes to keep blobs (called inside a read transaction).
    """
    from sqlalchemy import select

    from gateway.store.models import FlowRow, OutboxRow
    from gateway.store.outbox import SENT

    terminal = [s.value for s in TERMINAL_STATES]
    needed = set(
        conn.execute(
            select(FlowRow.sha256)
            .where(FlowRow.state.not_in(terminal), FlowRow.sha256.is_not(None))
            .distinct()
        ).scalars()
    )
    # the delivery outbox: a pending row will be sent, a dead one may be sent again (`gateway deliveries`)
    needed |= set(
        conn.execute(
            select(OutboxRow.payload_sha256)
            .where(OutboxRow.state != SENT, OutboxRow.payload_sha256.is_not(None))
            .distinct()
        ).scalars()
    )
    return needed


def _blob_uses(store: Any) -> tuple[dict[str, datetime], set[str]]:
    """(newest reception per content, blobs still needed), read in one transaction."""
    from sqlalchemy import func, select

    from gateway.store.models import FlowRow

    with store.reader() as conn, conn.begin():
        newest = {
            sha: received
            for sha, received in conn.execute(
                select(FlowRow.sha256, func.max(FlowRow.received_at))
                .where(FlowRow.sha256.is_not(None))
                .group_by(FlowRow.sha256)
            )
        }
        needed = needed_blobs(conn)
    return {sha: _aware(at) for sha, at in newest.items()}, needed


def _aware(value: datetime) -> datetime:
    """func.max() bypasses the UTCDateTime column type: make the result UTC-aware again."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
