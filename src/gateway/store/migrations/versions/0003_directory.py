"""Recipient directory and invoice uniqueness keys (issue 17, the `directory` branch).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.store.models import ID_TYPE, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_entries",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("line_key", sa.String(130), nullable=False, unique=True),
        sa.Column("siren", sa.String(9), nullable=False, index=True),
        sa.Column("siret", sa.String(14), index=True),
        sa.Column("routing_code", sa.String(100), index=True),
        sa.Column("addressing_id", sa.String(125), index=True),
        sa.Column("name", sa.String(150), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("service_code_required", sa.Boolean(), nullable=False),
        sa.Column("engagement_required", sa.Boolean(), nullable=False),
        sa.Column("service_or_engagement_required", sa.Boolean(), nullable=False),
        sa.Column("services_json", sa.Text(), nullable=False),
        sa.Column("partner", sa.String(64)),
        sa.Column("syntax", sa.String(8), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "accepted_invoice_keys",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("seller_key", sa.String(160), nullable=False),
        sa.Column("number", sa.String(128), nullable=False),
        sa.Column("year", sa.String(4), nullable=False),
        sa.Column("flow_id", sa.String(40), nullable=False, index=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "uq_accepted_invoice_keys", "accepted_invoice_keys", ["seller_key", "number", "year"], unique=True
    )


def downgrade() -> None:
    op.drop_table("accepted_invoice_keys")
    op.drop_table("directory_entries")
