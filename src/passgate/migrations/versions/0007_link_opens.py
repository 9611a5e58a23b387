"""mfa_sessions.link_opens: how many times the session's link was opened

Revision ID: 0007
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "mfa_sessions", sa.Column("link_opens", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )


def downgrade() -> None:
    with op.batch_alter_table("mfa_sessions") as batch:
        batch.drop_column("link_opens")
