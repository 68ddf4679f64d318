"""directory, outbox, login lockouts, invoice keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 17:39:12.566613
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accepted_invoice_keys",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("seller_key", sa.String(length=160), nullable=False),
        sa.Column("number", sa.String(length=128), nullable=False),
        sa.Column("year", sa.String(length=4), nullable=False),
        sa.Column("flow_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("accepted_invoice_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accepted_invoice_keys_flow_id"), ["flow_id"], unique=False)
        batch_op.create_index("uq_accepted_invoice_keys", ["seller_key", "number", "year"], unique=True)

    op.create_table(
        "directory_entries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("line_key", sa.String(length=130), nullable=False),
        sa.Column("siren", sa.String(length=9), nullable=False),
        sa.Column("siret", sa.String(length=14), nullable=True),
        sa.Column("routing_code", sa.String(length=100), nullable=True),
        sa.Column("addressing_id", sa.String(length=125), nullable=True),
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("service_code_required", sa.Boolean(), nullable=False),
        sa.Column("engagement_required", sa.Boolean(), nullable=False),
        sa.Column("service_or_engagement_required", sa.Boolean(), nullable=False),
        sa.Column("services_json", sa.Text(), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=True),
        sa.Column("syntax", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("line_key"),
    )
    with op.batch_alter_table("directory_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_directory_entries_addressing_id"), ["addressing_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_directory_entries_routing_code"), ["routing_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_directory_entries_siren"), ["siren"], unique=False)
        batch_op.create_index(batch_op.f("ix_directory_entries_siret"), ["siret"], unique=False)

    op.create_table(
        "login_lockouts",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "address", "username"),
    )
    with op.batch_alter_table("login_lockouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_lockouts_locked_until"), ["locked_until"], unique=False)

    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sink", sa.String(length=128), nullable=False),
        sa.Column("remote_name", sa.String(length=600), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("payload_sha256", sa.String(length=64), nullable=True),
        sa.Column("flow_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_id", sa.BigInteger(), nullable=True),
        sa.Column("meta_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_flow_id"), ["flow_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_invoice_id"), ["invoice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_sink"), ["sink"], unique=False)
        batch_op.create_index("ix_outbox_work", ["state", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_work")
        batch_op.drop_index(batch_op.f("ix_outbox_sink"))
        batch_op.drop_index(batch_op.f("ix_outbox_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_flow_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("login_lockouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_lockouts_locked_until"))

    op.drop_table("login_lockouts")
    with op.batch_alter_table("directory_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_directory_entries_siret"))
        batch_op.drop_index(batch_op.f("ix_directory_entries_siren"))
        batch_op.drop_index(batch_op.f("ix_directory_entries_routing_code"))
        batch_op.drop_index(batch_op.f("ix_directory_entries_addressing_id"))

    op.drop_table("directory_entries")
    with op.batch_alter_table("accepted_invoice_keys", schema=None) as batch_op:
        batch_op.drop_index("uq_accepted_invoice_keys")
        batch_op.drop_index(batch_op.f("ix_accepted_invoice_keys_flow_id"))

    op.drop_table("accepted_invoice_keys")
