"""clients, api keys, policy sets, decisions, devices

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import passgate.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_api_keys_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_client_id"), ["client_id"], unique=False)

    op.create_table(
        "decisions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("inquiry_id", sa.String(length=256), nullable=False),
        sa.Column("device_session_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=256), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("segment", sa.String(length=80), nullable=False),
        sa.Column("set_version", sa.String(length=32), nullable=False),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "request",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_decisions_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index("ix_decisions_client_created", ["client_id", "created_at"], unique=False)
        batch_op.create_index("ix_decisions_client_inquiry", ["client_id", "inquiry_id"], unique=False)

    op.create_table(
        "devices",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=256), nullable=False),
        sa.Column("device_session_id", sa.String(length=32), nullable=False),
        sa.Column("seen", sa.Boolean(), nullable=False),
        sa.Column("trust_state", sa.String(length=16), nullable=True),
        sa.Column("first_seen_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_devices_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("client_id", "account_id", "device_session_id", name=op.f("pk_devices")),
    )
    op.create_table(
        "policy_set_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("version_name", sa.String(length=32), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("restored_from", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_policy_set_versions_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_set_versions")),
        sa.UniqueConstraint(
            "client_id", "event_type", "version_name", name=op.f("uq_policy_set_versions_client_id")
        ),
    )
    op.create_table(
        "policy_sets",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column(
            "draft",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("draft_updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("active_version_id", sa.String(length=40), nullable=True),
        sa.Column("next_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_policy_sets_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("client_id", "event_type", name=op.f("pk_policy_sets")),
    )


def downgrade() -> None:
    op.drop_table("policy_sets")
    op.drop_table("policy_set_versions")
    op.drop_table("devices")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_client_inquiry")
        batch_op.drop_index("ix_decisions_client_created")

    op.drop_table("decisions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_client_id"))

    op.drop_table("api_keys")
    op.drop_table("clients")
