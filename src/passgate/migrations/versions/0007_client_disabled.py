"""clients.disabled_at: an operator can disable a client (no tokens, no console) and enable it again

Revision ID: 0007_client_disabled
Revises: 0001
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import passgate.db.types

revision = "0007_client_disabled"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("disabled_at", passgate.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("disabled_at")
