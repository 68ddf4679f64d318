"""Bearer tokens of partners: created once and shown once, stored as a SHA-256 hash.

A token is `gwt_` + 43 URL-safe characters (256 random bits). With that much entropy a plain SHA-256 is
enough to make a stolen table useless (no dictionary to try), and it lets a request find its token with
one indexed look-up instead of an argon2 run per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from gateway.store.db import utcnow
from gateway.store.models import ApiTokenRow

TOKEN_PREFIX = "gwt_"
MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class TokenInfo:
    id: int
    partner: str
    prefix: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(conn: Connection, partner: str, label: str = "") -> tuple[int, str]:
    """A new token for `partner`: (id, the token in clear — shown once, never stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    result = conn.execute(
        insert(ApiTokenRow).values(
            partner=partner,
            token_sha256=token_hash(token),
            prefix=token[:12],
            label=label[:128],
            created_at=utcnow(),
            revoked_at=None,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0]), token


def list_tokens(conn: Connection, partner: str | None = None) -> list[TokenInfo]:
    stmt = select(ApiTokenRow.__table__).order_by(ApiTokenRow.id)
    if partner:
        stmt = stmt.where(ApiTokenRow.partner == partner)
    return [
        TokenInfo(r.id, r.partner, r.prefix, r.label, r.created_at, r.revoked_at) for r in conn.execute(stmt)
    ]


def revoke_token(conn: Connection, token_id: int) -> bool:
    """Revoke one token; False if there is no such token or it was already revoked."""
    result = conn.execute(
        update(ApiTokenRow)
        .where(ApiTokenRow.id == token_id, ApiTokenRow.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount == 1


def partner_for_token(conn: Connection, token: str) -> str | None:
    """The partner a presented token belongs to, or None (unknown, revoked or malformed)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = conn.execute(
        select(ApiTokenRow.partner, ApiTokenRow.token_sha256).where(
            ApiTokenRow.token_sha256 == token_hash(token), ApiTokenRow.revoked_at.is_(None)
        )
    ).first()
    if row is None or not secrets.compare_digest(row.token_sha256, token_hash(token)):
        return None
    return str(row.partner)
