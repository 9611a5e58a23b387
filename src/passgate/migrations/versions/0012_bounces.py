"""message_bounces: the bounces received for emails (one row per distinct bounce)

Revision ID: 0012_bounces
Revises: 0008_job_leases
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import passgate.db.types

revision = "0012_bounces"
down_revision = "0008_job_leases"
branch_labels = None
# The messages table comes with 0002.
depends_on = "0002"


def upgrade() -> None:
    op.create_table(
        "message_bounces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("bounce_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("received_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_bounces_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_bounces")),
        sa.UniqueConstraint("message_id", "bounce_key", name="uq_message_bounces_message_key"),
    )


def downgrade() -> None:
    op.drop_table("message_bounces")
