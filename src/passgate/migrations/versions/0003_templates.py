"""client messaging templates and branding

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import passgate.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "message_templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("default_locale", sa.String(length=32), nullable=False),
        sa.Column("locales", _json(), nullable=False),
        sa.Column("created_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_message_templates_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_templates")),
        # Names are unique per client (not globally); this index also serves every lookup by name.
        sa.UniqueConstraint("client_id", "name", name="uq_message_templates_client_name"),
    )
    op.create_table(
        "client_branding",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("company_name", sa.String(length=100), nullable=False),
        sa.Column("logo_url", sa.String(length=2048), nullable=True),
        sa.Column("primary_color", sa.String(length=7), nullable=False),
        sa.Column("support_url", sa.String(length=2048), nullable=True),
        sa.Column("sender_name", sa.String(length=64), nullable=True),
        sa.Column("sending_domains", _json(), nullable=False),
        sa.Column("from_address", sa.String(length=254), nullable=True),
        sa.Column("updated_at", passgate.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_branding_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_client_branding")),
    )


def downgrade() -> None:
    op.drop_table("client_branding")
    op.drop_table("message_templates")
