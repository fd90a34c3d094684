"""Permissions (``scope:resource:action``), the built-in roles that carry them, and which of
them need a second factor.

Deny by default: a principal holds exactly the union of its roles' permissions. Every
permission an ordinary member does not hold is an administrative one and needs MFA
(``MFA_REQUIRED``): an admin's password alone never changes a tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Permission(StrEnum):
    # Self-service on one's own account: second factors, own sessions. Every role holds it.
    ACCOUNT_MANAGE = "self:account:manage"
    CHAT_COMPLETIONS_CREATE = "tenant:chat:create"
    MODELS_READ = "tenant:models:read"
    CONVERSATIONS_READ = "tenant:conversations:read"
    CONVERSATIONS_WRITE = "tenant:conversations:write"
    CODE_RUN = "tenant:code:run"
    FILES_READ = "tenant:files:read"
    FILES_WRITE = "tenant:files:write"
    AUDIT_READ = "tenant:audit:read"
    AUDIT_EXPORT = "tenant:audit:export"
    USERS_READ = "tenant:users:read"
    USERS_MANAGE = "tenant:users:manage"
    ROLES_MANAGE = "tenant:roles:manage"
    SESSIONS_REVOKE = "tenant:sessions:revoke"
    APIKEYS_MANAGE = "tenant:apikeys:manage"
    TOOL_POLICY_READ = "tenant:tool_policy:read"
    TOOL_POLICY_MANAGE = "tenant:tool_policy:manage"
    APPROVALS_DECIDE = "tenant:approvals:decide"
    # The tenant's injection/jailbreak detection policy: mode, thresholds, LLM judge.
    SAFEGUARDS_READ = "tenant:safeguards:read"
    SAFEGUARDS_MANAGE = "tenant:safeguards:manage"
    TENANT_MANAGE = "tenant:settings:manage"
    KEYS_MANAGE = "tenant:keys:manage"
    # Identity providers, group-to-role mappings and SCIM tokens: who can sign in, as what.
    FEDERATION_MANAGE = "tenant:federation:manage"
    # The tenant's failed background tasks (dead letters): read them and send them again.
    TASKS_MANAGE = "tenant:tasks:manage"
    # Tenant settings and where the tenant's data lives (retention periods, the data map).
    SETTINGS_READ = "tenant:settings:read"
    # The tenant's retention periods, within the operator's limits (docs/retention.md).
    RETENTION_MANAGE = "tenant:retention:manage"


# Custom role names: lowercase, digits, '-' and '_' (built-in names are reserved).
ROLE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{1,31}$"


class Role(StrEnum):
    """The built-in roles. Tenants add custom roles (``custom_roles`` table) by name."""

    OWNER = "owner"
    ADMIN = "admin"
    AUDITOR = "auditor"
    MEMBER = "member"
    VIEWER = "viewer"


_VIEWER = frozenset(
    {
        Permission.ACCOUNT_MANAGE,
        Permission.MODELS_READ,
        Permission.CONVERSATIONS_READ,
        Permission.FILES_READ,
    }
)
_MEMBER = _VIEWER | {
    Permission.CHAT_COMPLETIONS_CREATE,
    Permission.CONVERSATIONS_WRITE,
    Permission.CODE_RUN,
    Permission.FILES_WRITE,
}
_AUDITOR = _VIEWER | {
    Permission.AUDIT_READ,
    Permission.AUDIT_EXPORT,
    Permission.USERS_READ,
    Permission.TOOL_POLICY_READ,
    Permission.SAFEGUARDS_READ,
    Permission.SETTINGS_READ,
}
_ADMIN = (
    _MEMBER
    | _AUDITOR
    | {
        Permission.USERS_MANAGE,
        Permission.ROLES_MANAGE,
        Permission.SESSIONS_REVOKE,
        Permission.APIKEYS_MANAGE,
        Permission.TOOL_POLICY_MANAGE,
        Permission.SAFEGUARDS_MANAGE,
        Permission.APPROVALS_DECIDE,
        Permission.FEDERATION_MANAGE,
        Permission.TASKS_MANAGE,
        Permission.RETENTION_MANAGE,
    }
)
_OWNER = _ADMIN | {Permission.TENANT_MANAGE, Permission.KEYS_MANAGE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: _OWNER,
    Role.ADMIN: _ADMIN,
    Role.AUDITOR: _AUDITOR,
    Role.MEMBER: _MEMBER,
    Role.VIEWER: _VIEWER,
}

# Everything beyond what a member may do is administrative.
MFA_REQUIRED: frozenset[Permission] = frozenset(Permission) - _MEMBER


def requires_mfa(permission: Permission) -> bool:
    return permission in MFA_REQUIRED


def builtin_role(name: str) -> Role | None:
    try:
        return Role(name)
    except ValueError:
        return None


def permissions_for(roles: Iterable[str]) -> frozenset[Permission]:
    """The permissions of built-in roles; unknown names (custom roles) add nothing here."""
    granted: set[Permission] = set()
    for name in roles:
        role = builtin_role(name)
        if role is not None:
            granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def parse_permissions(values: Iterable[str]) -> frozenset[Permission]:
    """Permission strings from a custom role definition; raises ValueError naming a bad one."""
    parsed: set[Permission] = set()
    for value in values:
        try:
            parsed.add(Permission(value))
        except ValueError:
            raise ValueError(f"unknown permission {value!r}") from None
    return frozenset(parsed)
