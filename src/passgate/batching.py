"""Moved to passgate.db.group_commit."""

# transitional alias: removed when mfa and messaging use queries.py (messaging/services.py imports it here)
from passgate.db.group_commit import GroupCommitter

__all__ = ["GroupCommitter"]
