"""as2 messages

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 17:52:55.942171
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "as2_messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("as2_from", sa.String(length=130), nullable=False),
        sa.Column("as2_to", sa.String(length=130), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("result", sa.String(length=48), nullable=False),
        sa.Column("disposition", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("flow_id", sa.String(length=40), nullable=True),
        sa.Column("filename", sa.String(length=512), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("signed", sa.Boolean(), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("compressed", sa.Boolean(), nullable=False),
        sa.Column("mic", sa.String(length=200), nullable=True),
        sa.Column("mdn_mode", sa.String(length=8), nullable=False),
        sa.Column("mdn_message_id", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("as2_messages", schema=None) as batch_op:
        batch_op.create_index("ix_as2_messages_partner_mid", ["partner", "message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("as2_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_as2_messages_partner_mid")

    op.drop_table("as2_messages")
