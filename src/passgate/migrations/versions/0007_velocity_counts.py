"""velocity counts: one row per key and minute, a column per metric

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-04

velocity_counters held a row per (key, metric, minute). A decision counts up to four metrics of up to four
keys, and a challenge for a new device and address made four new rows with random keys, each dirtying a
page of its own at commit. One row per key and minute holds the same counts in half the rows for a
challenge, and a window is read from a quarter of the rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

METRICS = {
    "logins": "logins",
    "failedAttempts": "failed_attempts",
    "accountOpenings": "account_openings",
    "challenges": "challenges",
}
KEY = ("client_id", "dimension", "key_hash", "minute")

# The two shapes, as lightweight tables for the data moves.
counters = sa.table("velocity_counters", *(sa.column(c) for c in (*KEY, "metric", "count")))
counts = sa.table("velocity_counts", *(sa.column(c) for c in (*KEY, *METRICS.values())))


def upgrade() -> None:
    op.create_table(
        "velocity_counts",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("dimension", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=32), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        *(sa.Column(column, sa.Integer(), nullable=False, server_default="0") for column in METRICS.values()),
        sa.PrimaryKeyConstraint(*KEY, name=op.f("pk_velocity_counts")),
    )
    keys = [counters.c[k] for k in KEY]
    sums = [
        sa.func.sum(sa.case((counters.c.metric == metric, counters.c["count"]), else_=0))
        for metric in METRICS
    ]
    op.execute(
        sa.insert(counts).from_select([*KEY, *METRICS.values()], sa.select(*keys, *sums).group_by(*keys))
    )
    op.drop_table("velocity_counters")


def downgrade() -> None:
    op.create_table(
        "velocity_counters",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("dimension", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=24), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "client_id", "dimension", "key_hash", "metric", "minute", name=op.f("pk_velocity_counters")
        ),
    )
    for metric, column in METRICS.items():
        op.execute(
            sa.insert(counters).from_select(
                [*KEY, "metric", "count"],
                sa.select(*(counts.c[k] for k in KEY), sa.literal(metric), counts.c[column]).where(
                    counts.c[column] > 0
                ),
            )
        )
    op.drop_table("velocity_counts")
