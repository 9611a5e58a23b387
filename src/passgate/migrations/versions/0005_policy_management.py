"""policy lists, velocity counters, audit log

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import passgate.db.types

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "policy_lists",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_policy_lists_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_lists")),
        sa.UniqueConstraint("client_id", "name", name=op.f("uq_policy_lists_client_id")),
    )
    op.create_table(
        "policy_list_entries",
        sa.Column("list_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["policy_lists.id"],
            name=op.f("fk_policy_list_entries_list_id_policy_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("list_id", "value", name=op.f("pk_policy_list_entries")),
    )
    op.create_table(
        "velocity_counters",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("dimension", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=24), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "client_id", "dimension", "key_hash", "metric", "minute", name=op.f("pk_velocity_counters")
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_audit_log_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_client_id_desc", "audit_log", ["client_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_client_id_desc", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("velocity_counters")
    op.drop_table("policy_list_entries")
    op.drop_table("policy_lists")
