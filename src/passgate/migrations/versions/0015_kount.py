"""devices: a friendly name and the trust record's own times (Kount's trusted-device shape)

Revision ID: 0015_kount
Revises: 0008_job_leases
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import passgate.db.types

revision = "0015_kount"
down_revision = "0008_job_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("friendly_name", sa.String(length=256), nullable=True))
    op.add_column("devices", sa.Column("trust_created_at", passgate.db.types.UTCDateTime(), nullable=True))
    op.add_column("devices", sa.Column("trust_updated_at", passgate.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("trust_updated_at")
        batch.drop_column("trust_created_at")
        batch.drop_column("friendly_name")
