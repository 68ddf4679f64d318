"""lifecycle statuses

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:45:40.336721
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lifecycle_items",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("flow_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=512), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=True),
        sa.Column("invoice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=32), nullable=True),
        sa.Column("reason_message", sa.Text(), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["flow_id"],
            ["flows.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lifecycle_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lifecycle_items_flow_id"), ["flow_id"], unique=False)
        batch_op.create_index("uq_lifecycle_items_flow_seq", ["flow_id", "seq"], unique=True)

    op.create_table(
        "invoice_statuses",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("invoice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=3), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=True),
        sa.Column("reason_code", sa.String(length=32), nullable=True),
        sa.Column("reason_text", sa.Text(), nullable=True),
        sa.Column("source_flow", sa.String(length=40), nullable=True),
        sa.Column("details_json", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invoice_statuses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoice_statuses_invoice_id"), ["invoice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_invoice_statuses_source_flow"), ["source_flow"], unique=False)

    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lifecycle_status", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("lifecycle_at", UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_invoices_lifecycle_status"), ["lifecycle_status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoices_lifecycle_status"))
        batch_op.drop_column("lifecycle_at")
        batch_op.drop_column("lifecycle_status")

    with op.batch_alter_table("invoice_statuses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_statuses_source_flow"))
        batch_op.drop_index(batch_op.f("ix_invoice_statuses_invoice_id"))

    op.drop_table("invoice_statuses")
    with op.batch_alter_table("lifecycle_items", schema=None) as batch_op:
        batch_op.drop_index("uq_lifecycle_items_flow_seq")
        batch_op.drop_index(batch_op.f("ix_lifecycle_items_flow_id"))

    op.drop_table("lifecycle_items")
