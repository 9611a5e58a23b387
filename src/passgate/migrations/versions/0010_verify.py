"""mfa_sessions.source and .purpose (the Verify API), and the index that finds a pending session

Revision ID: 0010_verify
Revises: 0008_job_leases, 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_verify"
# mfa_sessions is made by 0002 and last changed by 0007 (link_opens), on another branch than 0008: this
# revision joins the two.
down_revision = ("0008_job_leases", "0007")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mfa_sessions") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default=sa.text("'decision'"))
        )
        batch.add_column(sa.Column("purpose", sa.String(length=16), nullable=True))
        batch.create_index(
            "ix_mfa_sessions_pending", ["client_id", "destination_hash", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mfa_sessions") as batch:
        batch.drop_index("ix_mfa_sessions_pending")
        batch.drop_column("purpose")
        batch.drop_column("source")
