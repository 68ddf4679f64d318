"""SQLAlchemy 2 models: flows, their append-only events, invoices (migrations: store/migrations).

Written for SQLite and PostgreSQL alike: string primary keys for flows (time-ordered ids made by the
gateway), timezone-aware timestamps stored as UTC, partial unique index for flow dedup.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, naive UTC in the column: same behaviour on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


ID_TYPE = BigInteger().with_variant(Integer, "sqlite")


class FlowRow(Base):
    __tablename__ = "flows"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(16))  # folder | sftp
    filename: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    checkpoint: Mapped[str | None] = mapped_column(String(16))  # where a FAILED flow resumes
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # transient failures so far
    claims: Mapped[int] = mapped_column(Integer, default=0)  # times a worker took it (crash detection)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duplicate_of: Mapped[str | None] = mapped_column(String(40))
    refused_reason: Mapped[str | None] = mapped_column(String(32))  # set at intake (IRR_TAILLE_F)
    syntax: Mapped[str | None] = mapped_column(String(32))
    syntax_code: Mapped[str | None] = mapped_column(String(48))
    profile: Mapped[str | None] = mapped_column(String(256))
    invoice_count: Mapped[int] = mapped_column(Integer, default=0)
    invoices_accepted: Mapped[int] = mapped_column(Integer, default=0)
    invoices_rejected: Mapped[int] = mapped_column(Integer, default=0)
    reason_code: Mapped[str | None] = mapped_column(String(32))
    reason_message: Mapped[str | None] = mapped_column(Text)
    chorus_status: Mapped[str | None] = mapped_column(String(32))
    ack_status: Mapped[str | None] = mapped_column(String(8))
    ack_name: Mapped[str | None] = mapped_column(String(600))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # One original per (partner, content); later copies point at it through duplicate_of.
        Index(
            "uq_flows_partner_sha_original",
            "partner",
            "sha256",
            unique=True,
            sqlite_where=text("duplicate_of IS NULL AND sha256 IS NOT NULL"),
            postgresql_where=text("duplicate_of IS NULL AND sha256 IS NOT NULL"),
        ),
        Index("ix_flows_work", "state", "next_attempt_at"),
    )


class FlowEventRow(Base):
    """Append-only history: one row per state change, written in the same transaction."""

    __tablename__ = "flow_events"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    flow_id: Mapped[str] = mapped_column(String(40), ForeignKey("flows.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str] = mapped_column(String(128))
    stage: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column()


class InvoiceRow(Base):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    flow_id: Mapped[str] = mapped_column(String(40), ForeignKey("flows.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    item: Mapped[str] = mapped_column(String(512))
    syntax: Mapped[str | None] = mapped_column(String(32))
    profile: Mapped[str | None] = mapped_column(String(256))
    number: Mapped[str | None] = mapped_column(String(128), index=True)
    type_code: Mapped[str | None] = mapped_column(String(8))
    issue_date: Mapped[str | None] = mapped_column(String(10))
    currency: Mapped[str | None] = mapped_column(String(3))
    seller_siret: Mapped[str | None] = mapped_column(String(20))
    seller_vat_id: Mapped[str | None] = mapped_column(String(32))
    buyer_siret: Mapped[str | None] = mapped_column(String(20))
    service_code: Mapped[str | None] = mapped_column(String(128))
    engagement_number: Mapped[str | None] = mapped_column(String(128))
    total_gross: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # accepted | rejected | not_validated
    reason_code: Mapped[str | None] = mapped_column(String(32))
    reason_message: Mapped[str | None] = mapped_column(Text)
    summary_json: Mapped[str] = mapped_column(Text)
    report_json: Mapped[str | None] = mapped_column(Text)

    # lifecycle (issue 18): the current status code (200, 203, 210...) and when it was set; history in
    # invoice_statuses. NULL until the gateway records the first status.
    lifecycle_status: Mapped[str | None] = mapped_column(String(3), index=True)
    lifecycle_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("uq_invoices_flow_seq", "flow_id", "seq", unique=True),)


# --- directory: recipient directory (issue 17; domain.md §5, chorus-reference.md §4) ---
class DirectoryEntryRow(Base):
    """One directory line: a legal unit (SIREN), a facility (SIRET) or a SIRET's routing code.

    `line_key` = "SIREN/SIRET/routing code" (empty parts for coarser lines) is the upsert key: a unique
    string, since unique indexes do not compare NULLs. `services_json` = [{"code","name","active"}, …].
    """

    __tablename__ = "directory_entries"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    line_key: Mapped[str] = mapped_column(String(130), unique=True)
    siren: Mapped[str] = mapped_column(String(9), index=True)
    siret: Mapped[str | None] = mapped_column(String(14), index=True)
    routing_code: Mapped[str | None] = mapped_column(String(100), index=True)
    addressing_id: Mapped[str | None] = mapped_column(String(125), index=True)
    name: Mapped[str] = mapped_column(String(150), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    service_code_required: Mapped[bool] = mapped_column(Boolean, default=False)
    engagement_required: Mapped[bool] = mapped_column(Boolean, default=False)
    service_or_engagement_required: Mapped[bool] = mapped_column(Boolean, default=False)
    services_json: Mapped[str] = mapped_column(Text, default="[]")
    partner: Mapped[str | None] = mapped_column(String(64))
    syntax: Mapped[str] = mapped_column(String(8), default="same")
    source: Mapped[str] = mapped_column(String(16))  # csv | json
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- delivery: the transactional outbox (acks, deliveries, and every other thing that leaves later) ---
class OutboxRow(Base):
    """One thing to send: enqueued in the transaction that decided it, sent by a delivery worker.

    `state`: pending (waiting or being sent under a lease) | sent | dead. The payload is kept inline
    (`payload`) or as a blob of the BlobStore (`payload_sha256` with `payload` NULL).
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # ack | delivery | cdar | webhook | mdn | concentrator
    sink: Mapped[str] = mapped_column(String(128), index=True)
    remote_name: Mapped[str] = mapped_column(String(600))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_sha256: Mapped[str | None] = mapped_column(String(64))
    flow_id: Mapped[str | None] = mapped_column(String(40), index=True)
    invoice_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    meta_json: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    receipt: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_outbox_work", "state", "next_attempt_at"),)


# --- sftp: login lockouts (issue 16 item 8), kept across restarts ---
class LoginLockoutRow(Base):
    """A running lockout: `username` "" = password logins of every user from `address`."""

    __tablename__ = "login_lockouts"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # "sftp"
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    failures: Mapped[int] = mapped_column(Integer)


# --- directory: invoice uniqueness keys ---
class AcceptedInvoiceKeyRow(Base):
    """Invoice uniqueness (domain.md §5: one number per seller and year): one row per accepted invoice,
    written in the transaction that routes it, so two flows carrying the same invoice at once cannot
    both pass (the second insert waits for the first commit, then conflicts → DOUBLON)."""

    __tablename__ = "accepted_invoice_keys"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    seller_key: Mapped[str] = mapped_column(String(160))
    number: Mapped[str] = mapped_column(String(128))
    year: Mapped[str] = mapped_column(String(4))
    flow_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("uq_accepted_invoice_keys", "seller_key", "number", "year", unique=True),)


# --- as2: received AS2 messages (issue 23; RFC 4130 dispositions) ---
class As2MessageRow(Base):
    """One received AS2 message and what we answered: `result` is `processed` (a flow was taken,
    `flow_id`) or the RFC 4130 error modifier (`unknown-trading-partner`, `authentication-failed`,
    `decryption-failed`, `integrity-check-failed`, `insufficient-message-security`,
    `duplicate-document`, `unexpected-processing-error`…). A Message-ID counts as a duplicate only
    against a `processed` row of the same partner."""

    __tablename__ = "as2_messages"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(300))
    as2_from: Mapped[str] = mapped_column(String(130))
    as2_to: Mapped[str] = mapped_column(String(130))
    partner: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    result: Mapped[str] = mapped_column(String(48))
    disposition: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)
    flow_id: Mapped[str | None] = mapped_column(String(40))
    filename: Mapped[str | None] = mapped_column(String(512))
    size: Mapped[int | None] = mapped_column(BigInteger)
    signed: Mapped[bool] = mapped_column(Boolean, default=False)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    compressed: Mapped[bool] = mapped_column(Boolean, default=False)
    mic: Mapped[str | None] = mapped_column(String(200))
    mdn_mode: Mapped[str] = mapped_column(String(8))  # sync | async | none
    mdn_message_id: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (Index("ix_as2_messages_partner_mid", "partner", "message_id"),)


# --- api: Flow Service tokens, webhooks and the flow information a partner gave (issue 21) ---
class ApiTokenRow(Base):
    """A partner's bearer token, kept only as the SHA-256 of a 256-bit random secret."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    partner: Mapped[str] = mapped_column(String(64), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in lists
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookRow(Base):
    """A callback URL a partner registered; events are signed with its key (HMAC-SHA256)."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID
    partner: Mapped[str] = mapped_column(String(64), index=True)
    callback_url: Mapped[str] = mapped_column(String(2048))
    signing_key: Mapped[str] = mapped_column(String(96))  # base64 of 32 random bytes
    filters_json: Mapped[str] = mapped_column(Text)  # flowTypes / flowDirection / ackStatus as given
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiFlowInfoRow(Base):
    """What a partner declared in `flowInfo` when it posted a flow (trackingId, processing rule, …)."""

    __tablename__ = "api_flow_info"

    flow_id: Mapped[str] = mapped_column(String(40), ForeignKey("flows.id"), primary_key=True)
    partner: Mapped[str] = mapped_column(String(64))
    tracking_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    flow_syntax: Mapped[str] = mapped_column(String(16))
    flow_profile: Mapped[str | None] = mapped_column(String(32))
    processing_rule: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_api_flow_info_tracking", "partner", "tracking_id"),)


# --- lifecycle: invoice status history and the outcome of each line of a lifecycle flow (issue 18) ---
class InvoiceStatusRow(Base):
    """One lifecycle status of an invoice (append-only); the invoice row keeps the current one."""

    __tablename__ = "invoice_statuses"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ID_TYPE, ForeignKey("invoices.id"), index=True)
    code: Mapped[str] = mapped_column(String(3))
    label: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())  # when the status was set (as its author says)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when the gateway recorded it
    actor: Mapped[str] = mapped_column(String(16))  # platform | issuer | recipient
    partner: Mapped[str | None] = mapped_column(String(64))  # partner that sent it (None: the gateway)
    reason_code: Mapped[str | None] = mapped_column(String(32))
    reason_text: Mapped[str | None] = mapped_column(Text)
    source_flow: Mapped[str | None] = mapped_column(String(40), index=True)
    details_json: Mapped[str | None] = mapped_column(Text)  # e.g. 212: amount collected, VAT rate


class LifecycleItemRow(Base):
    """What became of each status line of a lifecycle flow (its acknowledgement is built from these)."""

    __tablename__ = "lifecycle_items"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    flow_id: Mapped[str] = mapped_column(String(40), ForeignKey("flows.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    item: Mapped[str] = mapped_column(String(512))
    code: Mapped[str | None] = mapped_column(String(8))
    invoice_id: Mapped[int | None] = mapped_column(ID_TYPE)
    status: Mapped[str] = mapped_column(String(16))  # accepted | rejected
    reason_code: Mapped[str | None] = mapped_column(String(32))
    reason_message: Mapped[str | None] = mapped_column(Text)
    summary_json: Mapped[str] = mapped_column(Text)
    report_json: Mapped[str | None] = mapped_column(Text)  # CDAR validation report (XSD + BR-FR-CDV)

    __table_args__ = (Index("uq_lifecycle_items_flow_seq", "flow_id", "seq", unique=True),)


# --- console: operator accounts, their sessions and the audit of their actions ---
class OperatorRow(Base):
    """A person who signs in to the web console; the password is kept as an argon2 hash only."""

    __tablename__ = "operators"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # admin | read-only
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OperatorSessionRow(Base):
    """A signed-in console session: the cookie holds a random token, the store only its SHA-256."""

    __tablename__ = "operator_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator: Mapped[str] = mapped_column(String(64), ForeignKey("operators.name"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class OperatorAuditRow(Base):
    """Append-only: one row per console action (sign-in, replay, resend, download, refusals)."""

    __tablename__ = "operator_audit"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    operator: Mapped[str | None] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    detail: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(64))
