"""sms_breakers, sms_breaker_transitions, client_settings.sms_breaker: the SMS pumping breaker

Revision ID: 0011_sms_breaker
Revises: 0008_job_leases (and needs 0002, which made client_settings)
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import passgate.db.types

revision = "0011_sms_breaker"
down_revision = "0008_job_leases"
branch_labels = None
depends_on = "0002"


def upgrade() -> None:
    with op.batch_alter_table("client_settings") as batch:
        batch.add_column(sa.Column("sms_breaker", passgate.db.types.JSONType, nullable=True))
    op.create_table(
        "sms_breakers",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.Column("changed_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("probe_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_sms_breakers_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("client_id", "country", name=op.f("pk_sms_breakers")),
    )
    op.create_table(
        "sms_breaker_transitions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=False),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.Column("occurred_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_sms_breaker_transitions_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_breaker_transitions")),
    )
    op.create_index(
        "ix_sms_breaker_transitions_client_at",
        "sms_breaker_transitions",
        ["client_id", "occurred_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_sms_breaker_transitions_client_at", table_name="sms_breaker_transitions")
    op.drop_table("sms_breaker_transitions")
    op.drop_table("sms_breakers")
    with op.batch_alter_table("client_settings") as batch:
        batch.drop_column("sms_breaker")
