"""console users, sessions, trusted devices, pending sign-ins

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import passgate.db.types

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("disabled_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_sign_in_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_console_users_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
        sa.UniqueConstraint("email", name=op.f("uq_console_users_email")),
    )
    op.create_index("ix_console_users_client", "console_users", ["client_id"], unique=False)

    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_sessions_user_id_console_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_sessions_token_hash")),
    )
    op.create_index("ix_console_sessions_user", "console_sessions", ["user_id"], unique=False)

    op.create_table(
        "console_devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_devices_user_id_console_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_devices")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_devices_token_hash")),
    )
    op.create_index("ix_console_devices_user", "console_devices", ["user_id"], unique=False)

    op.create_table(
        "console_sign_ins",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("mfa_session_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("completed_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_sign_ins_user_id_console_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sign_ins")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_sign_ins_token_hash")),
    )
    op.create_index("ix_console_sign_ins_user", "console_sign_ins", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_console_sign_ins_user", table_name="console_sign_ins")
    op.drop_table("console_sign_ins")
    op.drop_index("ix_console_devices_user", table_name="console_devices")
    op.drop_table("console_devices")
    op.drop_index("ix_console_sessions_user", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_index("ix_console_users_client", table_name="console_users")
    op.drop_table("console_users")
