"""Initial schema: flows, flow_events, invoices (the schema_version 1 of gateway 0.1).

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.store.models import ID_TYPE, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("partner", sa.String(64), nullable=False, index=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("received_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("checkpoint", sa.String(16)),
        sa.Column("state_changed_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("duplicate_of", sa.String(40)),
        sa.Column("refused_reason", sa.String(32)),
        sa.Column("syntax", sa.String(32)),
        sa.Column("syntax_code", sa.String(48)),
        sa.Column("profile", sa.String(256)),
        sa.Column("invoice_count", sa.Integer(), nullable=False),
        sa.Column("invoices_accepted", sa.Integer(), nullable=False),
        sa.Column("invoices_rejected", sa.Integer(), nullable=False),
        sa.Column("reason_code", sa.String(32)),
        sa.Column("reason_message", sa.Text()),
        sa.Column("chorus_status", sa.String(32)),
        sa.Column("ack_status", sa.String(8)),
        sa.Column("ack_name", sa.String(600)),
        sa.Column("completed_at", UTCDateTime()),
    )
    op.create_index(
        "uq_flows_partner_sha_original",
        "flows",
        ["partner", "sha256"],
        unique=True,
        sqlite_where=sa.text("duplicate_of IS NULL AND sha256 IS NOT NULL"),
        postgresql_where=sa.text("duplicate_of IS NULL AND sha256 IS NOT NULL"),
    )
    op.create_index("ix_flows_work", "flows", ["state", "next_attempt_at"])
    op.create_table(
        "flow_events",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("flow_id", sa.String(40), sa.ForeignKey("flows.id"), nullable=False, index=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("stage", sa.String(16)),
        sa.Column("reason", sa.Text()),
        sa.Column("duration_ms", sa.Double()),
    )
    op.create_table(
        "invoices",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("flow_id", sa.String(40), sa.ForeignKey("flows.id"), nullable=False, index=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(512), nullable=False),
        sa.Column("syntax", sa.String(32)),
        sa.Column("profile", sa.String(256)),
        sa.Column("number", sa.String(128), index=True),
        sa.Column("type_code", sa.String(8)),
        sa.Column("issue_date", sa.String(10)),
        sa.Column("currency", sa.String(3)),
        sa.Column("seller_siret", sa.String(20)),
        sa.Column("seller_vat_id", sa.String(32)),
        sa.Column("buyer_siret", sa.String(20)),
        sa.Column("service_code", sa.String(128)),
        sa.Column("engagement_number", sa.String(128)),
        sa.Column("total_gross", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(32)),
        sa.Column("reason_message", sa.Text()),
        sa.Column("summary_json", sa.Text(), nullable=False),
        sa.Column("report_json", sa.Text()),
    )
    op.create_index("uq_invoices_flow_seq", "invoices", ["flow_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_table("invoices")
    op.drop_table("flow_events")
    op.drop_table("flows")
