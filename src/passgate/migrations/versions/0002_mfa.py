"""mfa sessions, secrets, events, failure counters, client settings, outbox, dev inbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import passgate.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dev_inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("destination", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("code", sa.String(length=16), nullable=True),
        sa.Column(
            "meta",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dev_inbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_dev_inbox_message_id")),
    )
    with op.batch_alter_table("dev_inbox", schema=None) as batch_op:
        batch_op.create_index("ix_dev_inbox_created", ["created_at"], unique=False)

    op.create_table(
        "mfa_failure_counters",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_allowed_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "scope", "subject_hash", name=op.f("pk_mfa_failure_counters")),
    )
    op.create_table(
        "client_settings",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("link_ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("otp_ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("otp_length", sa.Integer(), nullable=True),
        sa.Column("max_verify_attempts", sa.Integer(), nullable=True),
        sa.Column("max_sends", sa.Integer(), nullable=True),
        sa.Column(
            "sms_allowed_countries",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("reject_voip", sa.Boolean(), nullable=True),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_settings_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_client_settings")),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("secret_id", sa.String(length=36), nullable=True),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("destination", sa.String(length=254), nullable=False),
        sa.Column("template_name", sa.String(length=100), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("delivery_status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("locked_until", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("sent_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_messages_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_messages_provider_id", ["provider_message_id"], unique=False)
        batch_op.create_index("ix_messages_session", ["session_id"], unique=False)

    op.create_table(
        "mfa_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("decision_id", sa.String(length=36), nullable=True),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("template_name", sa.String(length=100), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("destination", sa.String(length=254), nullable=False),
        sa.Column("destination_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=256), nullable=True),
        sa.Column("device_session_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("termination_reason", sa.String(length=32), nullable=True),
        sa.Column("delivery_status", sa.String(length=16), nullable=True),
        sa.Column("send_attempts", sa.Integer(), nullable=False),
        sa.Column("verification_attempts", sa.Integer(), nullable=False),
        sa.Column("max_sends", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("code_length", sa.Integer(), nullable=False),
        sa.Column("expires_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("verified_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("target_url", sa.String(length=2048), nullable=True),
        sa.Column("bind_to_device", sa.Boolean(), nullable=False),
        sa.Column("match_number", sa.String(length=2), nullable=True),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column(
            "render_context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_mfa_sessions_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_sessions")),
    )
    with op.batch_alter_table("mfa_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_mfa_sessions_client_created", ["client_id", "created_at"], unique=False)
        batch_op.create_index("ix_mfa_sessions_open_expiry", ["status", "expires_at"], unique=False)

    op.create_table(
        "message_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("started_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_attempts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attempts")),
    )
    with op.batch_alter_table("message_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_message_attempts_message", ["message_id"], unique=False)

    op.create_table(
        "mfa_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["mfa_sessions.id"],
            name=op.f("fk_mfa_events_session_id_mfa_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_events")),
    )
    with op.batch_alter_table("mfa_events", schema=None) as batch_op:
        batch_op.create_index("ix_mfa_events_session", ["session_id", "id"], unique=False)

    op.create_table(
        "mfa_secrets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("activated_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("expires_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["mfa_sessions.id"],
            name=op.f("fk_mfa_secrets_session_id_mfa_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_secrets")),
    )
    with op.batch_alter_table("mfa_secrets", schema=None) as batch_op:
        batch_op.create_index("ix_mfa_secrets_hash", ["secret_hash"], unique=False)
        batch_op.create_index("ix_mfa_secrets_session", ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mfa_secrets", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_secrets_session")
        batch_op.drop_index("ix_mfa_secrets_hash")

    op.drop_table("mfa_secrets")
    with op.batch_alter_table("mfa_events", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_events_session")

    op.drop_table("mfa_events")
    with op.batch_alter_table("message_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_message_attempts_message")

    op.drop_table("message_attempts")
    with op.batch_alter_table("mfa_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_sessions_open_expiry")
        batch_op.drop_index("ix_mfa_sessions_client_created")

    op.drop_table("mfa_sessions")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_session")
        batch_op.drop_index("ix_messages_provider_id")
        batch_op.drop_index("ix_messages_due")

    op.drop_table("messages")
    op.drop_table("client_settings")
    op.drop_table("mfa_failure_counters")
    with op.batch_alter_table("dev_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_dev_inbox_created")

    op.drop_table("dev_inbox")
