"""an index of MFA sessions by the decision that started them

The console's activity list and decision page look a decision's session up by its id
(`console.activity.sessions_of`); without an index that read went through every session the client made
since the oldest decision shown.

Revision ID: 0016_session_decision_index
Revises: 0008_job_leases, 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0016_session_decision_index"
# After 0008_job_leases like its siblings, and after 0002 (which made mfa_sessions), whose table it
# indexes: a merge, so that the version table and the script agree on the heads.
down_revision = ("0008_job_leases", "0002")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_mfa_sessions_decision", "mfa_sessions", ["decision_id"])


def downgrade() -> None:
    op.drop_index("ix_mfa_sessions_decision", table_name="mfa_sessions")
