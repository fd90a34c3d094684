"""Permissions (``scope:resource:action``) and the roles that carry them."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    CHAT_COMPLETIONS_CREATE = "tenant:chat:create"
    MODELS_READ = "tenant:models:read"
    CONVERSATIONS_READ = "tenant:conversations:read"
    CONVERSATIONS_WRITE = "tenant:conversations:write"
    AUDIT_READ = "tenant:audit:read"
    USERS_MANAGE = "tenant:users:manage"
    APIKEYS_MANAGE = "tenant:apikeys:manage"
    TOOL_POLICY_READ = "tenant:tool_policy:read"
    TOOL_POLICY_MANAGE = "tenant:tool_policy:manage"
    APPROVALS_DECIDE = "tenant:approvals:decide"
    CODE_RUN = "tenant:code:run"


class Role(StrEnum):
    MEMBER = "member"
    ADMIN = "admin"


_MEMBER = frozenset(
    {
        Permission.CHAT_COMPLETIONS_CREATE,
        Permission.MODELS_READ,
        Permission.CONVERSATIONS_READ,
        Permission.CONVERSATIONS_WRITE,
        Permission.CODE_RUN,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.MEMBER: _MEMBER,
    Role.ADMIN: _MEMBER
    | {
        Permission.AUDIT_READ,
        Permission.USERS_MANAGE,
        Permission.APIKEYS_MANAGE,
        Permission.TOOL_POLICY_READ,
        Permission.TOOL_POLICY_MANAGE,
        Permission.APPROVALS_DECIDE,
    },
}


def permissions_for(roles: frozenset[Role]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)
