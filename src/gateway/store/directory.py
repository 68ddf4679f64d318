"""The recipient directory and the already-accepted invoices, over a DB connection.

`DirectoryStore(conn)` implements `DirectoryLookup` and `AcceptedInvoices(conn)` implements
`DuplicateCheck` (gateway.transforms.route); both read through the connection they are given, so the
pipeline can decide and record in one transaction. `upsert_entries` loads parsed directory lines
(gateway.transforms.directory_file): idempotent, and with `replace=True` the lines given become the
whole directory.

Use in the pipeline's ROUTE stage, in the transaction that records the decisions:

    with store.transaction() as conn:
        directory, duplicates = DirectoryStore(conn), AcceptedInvoices(conn, exclude_flow=flow.id)
        for summary in accepted_summaries:          # in the flow's order
            decision = route_invoice(summary, directory, duplicates)
            if decision.routed and not duplicates.record(summary):
                ...  # a twin in another flow committed meanwhile: reject this one as DOUBLON
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.store.models import AcceptedInvoiceKeyRow, DirectoryEntryRow, InvoiceRow
from gateway.transforms.directory_file import ParsedDirectory, Rejected
from gateway.transforms.route import Recipient, Service, issue_year, seller_key

_FIELDS = (
    "siren",
    "siret",
    "routing_code",
    "addressing_id",
    "name",
    "active",
    "service_code_required",
    "engagement_required",
    "service_or_engagement_required",
    "partner",
    "syntax",
)


def _services_json(services: Sequence[Service]) -> str:
    return json.dumps(
        [{"code": s.code, "name": s.name, "active": s.active} for s in services], ensure_ascii=False
    )


def _recipient(row: Any) -> Recipient:
    m = row._mapping
    services = tuple(
        Service(code=str(s["code"]), name=str(s.get("name") or ""), active=bool(s.get("active", True)))
        for s in json.loads(m["services_json"] or "[]")
    )
    return Recipient(
        siren=m["siren"],
        siret=m["siret"],
        routing_code=m["routing_code"],
        addressing_id=m["addressing_id"],
        name=m["name"] or "",
        active=bool(m["active"]),
        service_code_required=bool(m["service_code_required"]),
        engagement_required=bool(m["engagement_required"]),
        service_or_engagement_required=bool(m["service_or_engagement_required"]),
        services=services,
        partner=m["partner"],
        syntax=m["syntax"] or "same",
    )


def _values(recipient: Recipient) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(recipient, name) for name in _FIELDS}
    values["services_json"] = _services_json(recipient.services)
    return values


class DirectoryStore:
    """Directory look-ups (the `DirectoryLookup` protocol) over an open connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _one(self, *where: Any) -> Recipient | None:
        row = self.conn.execute(
            select(DirectoryEntryRow.__table__).where(*where).order_by(DirectoryEntryRow.id).limit(1)
        ).first()
        return _recipient(row) if row is not None else None

    def by_addressing_id(self, addressing_id: str) -> Recipient | None:
        return self._one(DirectoryEntryRow.addressing_id == addressing_id)

    def by_siret(self, siret: str, routing_code: str | None = None) -> Recipient | None:
        if routing_code is None:
            return self._one(DirectoryEntryRow.siret == siret, DirectoryEntryRow.routing_code.is_(None))
        return self._one(DirectoryEntryRow.siret == siret, DirectoryEntryRow.routing_code == routing_code)

    def by_siren(self, siren: str) -> Recipient | None:
        return self._one(DirectoryEntryRow.siren == siren, DirectoryEntryRow.siret.is_(None))

    def siret_known(self, siret: str) -> bool:
        return self._one(DirectoryEntryRow.siret == siret) is not None

    def find(self, key: str) -> list[Recipient]:
        """Every line matching `key` as a SIRET, SIREN, routing code or electronic address."""
        key = key.strip()
        stmt = (
            select(DirectoryEntryRow.__table__)
            .where(
                or_(
                    DirectoryEntryRow.siret == key,
                    DirectoryEntryRow.siren == key,
                    DirectoryEntryRow.routing_code == key,
                    DirectoryEntryRow.addressing_id == key,
                )
            )
            .order_by(DirectoryEntryRow.line_key)
        )
        return [_recipient(r) for r in self.conn.execute(stmt)]

    def all(self, *, partner: str | None = None, limit: int | None = None) -> list[Recipient]:
        stmt = select(DirectoryEntryRow.__table__).order_by(DirectoryEntryRow.line_key)
        if partner is not None:
            stmt = stmt.where(DirectoryEntryRow.partner == partner)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_recipient(r) for r in self.conn.execute(stmt)]

    def count(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(DirectoryEntryRow)).scalar_one())


@dataclass
class UpsertResult:
    inserted: list[str] = field(default_factory=list)  # line keys
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inserted": len(self.inserted),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "deleted": len(self.deleted),
        }


def upsert_entries(
    conn: Connection,
    recipients: Iterable[Recipient],
    *,
    source: str,
    now: datetime,
    replace: bool = False,
) -> UpsertResult:
    """Insert or update each line by its key (unchanged lines are not rewritten); with `replace`,
    delete every line not given. Call inside a transaction: all or nothing."""
    result = UpsertResult()
    existing = {r.line_key: r for r in conn.execute(select(DirectoryEntryRow.__table__))}
    seen: set[str] = set()
    for recipient in recipients:
        key = recipient.key
        seen.add(key)
        values = _values(recipient)
        old = existing.get(key)
        if old is None:
            conn.execute(
                insert(DirectoryEntryRow).values(line_key=key, source=source, updated_at=now, **values)
            )
            result.inserted.append(key)
            continue
        old_values = {name: old._mapping[name] for name in (*_FIELDS, "services_json")}
        for flag in (
            "active",
            "service_code_required",
            "engagement_required",
            "service_or_engagement_required",
        ):
            old_values[flag] = bool(old_values[flag])
        if old_values == values:
            result.unchanged.append(key)
            continue
        conn.execute(
            update(DirectoryEntryRow)
            .where(DirectoryEntryRow.id == old._mapping["id"])
            .values(source=source, updated_at=now, **values)
        )
        result.updated.append(key)
    if replace:
        gone = sorted(set(existing) - seen)
        for start in range(0, len(gone), 500):
            conn.execute(
                delete(DirectoryEntryRow).where(DirectoryEntryRow.line_key.in_(gone[start : start + 500]))
            )
        result.deleted = gone
    return result


def addressing_owners(conn: Connection, addressing_ids: Iterable[str]) -> dict[str, str]:
    """addressing id → line key of the line that holds it now (to refuse one address on two lines)."""
    ids = sorted(set(addressing_ids))
    owners: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(DirectoryEntryRow.addressing_id, DirectoryEntryRow.line_key).where(
                DirectoryEntryRow.addressing_id.in_(ids[start : start + 500])
            )
        )
        owners.update({r.addressing_id: r.line_key for r in rows})
    return owners


@dataclass
class ImportReport:
    format: str
    result: UpsertResult
    rejected: list[Rejected]
    applied: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "applied": self.applied,
            **self.result.to_dict(),
            "rejected": [r.to_dict() for r in self.rejected],
        }


def import_directory(
    conn: Connection, parsed: ParsedDirectory, *, now: datetime, replace: bool = False
) -> ImportReport:
    """Load parsed lines (inside a transaction). A line whose electronic address already belongs to
    another line that stays is rejected too. With `replace`, any rejected line aborts the import: the
    directory is left as it was (a bad line must not silently delete a recipient)."""
    rejected = list(parsed.rejected)
    keep: list[Recipient] = []
    owners = (
        {}
        if replace
        else addressing_owners(conn, (r.addressing_id for r in parsed.recipients if r.addressing_id))
    )
    for number, recipient in parsed.lines:
        owner = owners.get(recipient.addressing_id or "")
        if owner is not None and owner != recipient.key:
            rejected.append(
                Rejected(
                    number,
                    f"addressing identifier {recipient.addressing_id} belongs to directory line {owner}",
                )
            )
            continue
        keep.append(recipient)
    rejected.sort(key=lambda r: (r.line is None, r.line or 0, r.where))
    if replace and rejected:
        return ImportReport(parsed.format, UpsertResult(), rejected, applied=False)
    result = upsert_entries(conn, keep, source=parsed.format, now=now, replace=replace)
    return ImportReport(parsed.format, result, rejected, applied=True)


class AcceptedInvoices:
    """The `DuplicateCheck` protocol: invoices already accepted, by seller, number and year.

    The truth is `accepted_invoice_keys`, written by `record` when an invoice is routed. Invoice rows
    are not looked at by default: a row may say "accepted" (validated) before its flow is routed, and two
    twins waiting for routing must not make each other duplicates. `statuses` (e.g. ("accepted",)) adds
    a look at the `invoices` table — for rows accepted before this table existed. `exclude_flow` is the
    flow being routed: its own earlier keys (a replayed flow) never make it a duplicate of itself, and
    `record` writes its keys under that flow id.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        exclude_flow: str | None = None,
        statuses: Sequence[str] = (),
    ) -> None:
        self.conn = conn
        self.exclude_flow = exclude_flow
        self.statuses = tuple(statuses)
        self._batch: set[tuple[str, str, str]] = set()

    def remember(self, seller: str, number: str, year: str) -> None:
        """Count an invoice accepted earlier in the same batch (not written yet) — memory only."""
        self._batch.add((seller, number, year))

    def record(self, summary: Mapping[str, Any], *, now: datetime | None = None) -> bool:
        """Mark a routed invoice accepted: for the rest of the batch and, when the flow is known
        (`exclude_flow`), in `accepted_invoice_keys` inside the caller's transaction. False when another
        flow holds the same key (a twin committed meanwhile): treat the invoice as a DOUBLON."""
        seller, number, year = seller_key(summary), summary.get("number"), issue_year(summary)
        if not (seller and number and year):
            return True
        number = str(number).strip()
        self.remember(seller, number, year)
        if self.exclude_flow is None:
            return True
        key = (seller[:160], number[:128], year)
        holder = self._key_holder(*key)
        if holder is not None:
            return holder == self.exclude_flow
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(AcceptedInvoiceKeyRow).values(
                        seller_key=key[0],
                        number=key[1],
                        year=key[2],
                        flow_id=self.exclude_flow,
                        created_at=now or datetime.now(UTC),
                    )
                )
        except IntegrityError:
            return False
        return True

    def remember_summary(self, summary: Mapping[str, Any]) -> bool:
        """Same as `record`."""
        return self.record(summary)

    def _key_holder(self, seller: str, number: str, year: str) -> str | None:
        return self.conn.execute(
            select(AcceptedInvoiceKeyRow.flow_id).where(
                AcceptedInvoiceKeyRow.seller_key == seller,
                AcceptedInvoiceKeyRow.number == number,
                AcceptedInvoiceKeyRow.year == year,
            )
        ).scalar()

    def already_accepted(self, seller: str, number: str, year: str) -> bool:
        if (seller, number, year) in self._batch:
            return True
        holder = self._key_holder(seller[:160], number[:128], year)
        if holder is not None and holder != self.exclude_flow:
            return True
        if not self.statuses:
            return False
        stmt = select(InvoiceRow.summary_json).where(
            InvoiceRow.number == number, InvoiceRow.status.in_(self.statuses)
        )
        if self.exclude_flow is not None:
            stmt = stmt.where(InvoiceRow.flow_id != self.exclude_flow)
        for row in self.conn.execute(stmt):
            try:
                summary = json.loads(row.summary_json)
            except ValueError:
                continue
            if isinstance(summary, dict) and seller_key(summary) == seller and issue_year(summary) == year:
                return True
        return False
