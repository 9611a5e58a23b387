"""Who may do what in the console: three roles, one table. Pure, so the matrix is tested exhaustively.

viewer  reads every page, never changes anything;
analyst also edits policies, lists and templates, publishes, simulates and sends test messages;
owner   also manages API keys, webhooks, MFA settings and branding.
Anyone signed in may preview a template (it changes nothing) and manage their own sign-in sessions.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ANALYST = "analyst"
    VIEWER = "viewer"


class Permission(StrEnum):
    READ = "read"
    PREVIEW = "templates.preview"
    OWN_ACCOUNT = "account.own"
    TEMPLATES_EDIT = "templates.edit"
    TEMPLATES_TEST_SEND = "templates.test-send"
    POLICIES_EDIT = "policies.edit"
    POLICIES_PUBLISH = "policies.publish"
    POLICIES_SIMULATE = "policies.simulate"
    LISTS_EDIT = "lists.edit"
    BRANDING_EDIT = "branding.edit"
    WEBHOOKS_MANAGE = "webhooks.manage"
    KEYS_MANAGE = "keys.manage"
    SETTINGS_EDIT = "settings.edit"


_RANK = {Role.VIEWER: 0, Role.ANALYST: 1, Role.OWNER: 2}

# The least role that may do each thing.
MATRIX: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.PREVIEW: Role.VIEWER,
    Permission.OWN_ACCOUNT: Role.VIEWER,
    Permission.TEMPLATES_EDIT: Role.ANALYST,
    Permission.TEMPLATES_TEST_SEND: Role.ANALYST,
    Permission.POLICIES_EDIT: Role.ANALYST,
    Permission.POLICIES_PUBLISH: Role.ANALYST,
    Permission.POLICIES_SIMULATE: Role.ANALYST,
    Permission.LISTS_EDIT: Role.ANALYST,
    Permission.BRANDING_EDIT: Role.OWNER,
    Permission.WEBHOOKS_MANAGE: Role.OWNER,
    Permission.KEYS_MANAGE: Role.OWNER,
    Permission.SETTINGS_EDIT: Role.OWNER,
}


def allows(role: str, permission: Permission) -> bool:
    try:
        have = Role(role)
    except ValueError:
        return False  # an unknown role (a hand-edited row) may do nothing
    return _RANK[have] >= _RANK[MATRIX[permission]]


def permissions_of(role: str) -> frozenset[Permission]:
    return frozenset(p for p in Permission if allows(role, p))
