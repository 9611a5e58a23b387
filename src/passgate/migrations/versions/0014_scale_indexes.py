"""scale indexes: a client's sessions by account, an endpoint's deliveries newest first

With a year of data (bench/scale.py), two reads went through every row of a client or an endpoint: the
session search by account (`mfa.queries.search_sessions`, the console's support search) and the deliveries
log (`WebhookService.deliveries`, newest first). Each gets the index it reads in order.

Revision ID: 0014_scale_indexes
Revises: 0008_job_leases, 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014_scale_indexes"
# After 0008_job_leases like its siblings, and after 0004 (the webhook tables, and through 0002 the MFA
# ones) whose tables it indexes: a merge, so that the version table and the script agree on the heads.
down_revision = ("0008_job_leases", "0004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_mfa_sessions_client_account", "mfa_sessions", ["client_id", "account_id", "created_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_created", "webhook_deliveries", ["endpoint_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_endpoint_created", table_name="webhook_deliveries")
    op.drop_index("ix_mfa_sessions_client_account", table_name="mfa_sessions")
