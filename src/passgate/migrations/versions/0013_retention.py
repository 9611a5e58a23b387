"""retention: a client's retention periods, and the indexes the purge and the erasure look rows up by

Revision ID: 0013_retention
Revises: 0008_job_leases, 0004, 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import passgate.db.types

revision = "0013_retention"
# Also after the revisions that made the tables the indexes go on (mfa_sessions and messages: 0002, by
# way of 0004; webhook_deliveries: 0004; audit_log: 0005). Alembic's `depends_on` cannot say this when
# those revisions are already applied on another branch, so this revision merges them.
down_revision = ("0008_job_leases", "0004", "0005")
branch_labels = None
depends_on = None

# (index, table, columns): the purge walks each client's rows by time, the erasure by account.
INDEXES = (
    ("ix_messages_client_created", "messages", ["client_id", "created_at"]),
    ("ix_webhook_deliveries_client_created", "webhook_deliveries", ["client_id", "created_at"]),
    ("ix_audit_log_client_at", "audit_log", ["client_id", "at"]),
    # The erasure's look-up of an account's sessions uses 0014_scale_indexes' ix_mfa_sessions_client_account.
    ("ix_decisions_client_account", "decisions", ["client_id", "account_id"]),
)


def upgrade() -> None:
    op.create_table(
        "client_retention",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("sessions_days", sa.Integer(), nullable=True),
        sa.Column("decisions_days", sa.Integer(), nullable=True),
        sa.Column("webhook_deliveries_days", sa.Integer(), nullable=True),
        sa.Column("audit_log_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_retention_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_client_retention")),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("client_retention")
