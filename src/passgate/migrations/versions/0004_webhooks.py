"""webhooks: endpoints, Kount signing keys, events (the outbox), deliveries, attempts

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import passgate.db.types

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("events", JSON, nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=True),
        sa.Column("signature_scheme", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=16), nullable=True),
        sa.Column("disabled_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("sealed_secret", sa.Text(), nullable=True),
        sa.Column("sealed_previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_until", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("failing_since", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_success_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_failure_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_webhook_endpoints_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index("ix_webhook_endpoints_client", "webhook_endpoints", ["client_id", "enabled"])

    op.create_table(
        "webhook_signing_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("sealed_private_pem", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("valid_until", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_webhook_signing_keys_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_signing_keys")),
    )
    op.create_index("ix_webhook_signing_keys_client", "webhook_signing_keys", ["client_id", "created_at"])

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=8), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_webhook_events_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    op.create_index("ix_webhook_events_client_created", "webhook_events", ["client_id", "created_at"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("endpoint_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("locked_until", passgate.db.types.UTCDateTime(), nullable=True),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("lock_token", sa.String(length=32), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["webhook_events.id"],
            name=op.f("fk_webhook_deliveries_event_id_webhook_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["endpoint_id", "status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_order", "webhook_deliveries", ["endpoint_id", "session_id", "sequence"]
    )
    op.create_index("ix_webhook_deliveries_locks", "webhook_deliveries", ["status", "locked_until"])
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"])

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("started_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", passgate.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "attempt"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_signing_keys")
    op.drop_table("webhook_endpoints")
