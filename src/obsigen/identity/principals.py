"""Rebuilding a principal from its role bindings: per request (tokens, keys) and for work done
later on its behalf (approved calls).

At most two queries: the principal's bindings, then the tenant's custom roles they name (none
when every bound role is built-in). A binding naming a role that no longer exists, or a scope
this version does not understand, grants nothing: deny by default.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Permission, builtin_role
from obsigen.authz.principal import Principal, PrincipalKind
from obsigen.authz.roles import (
    TENANT_SCOPE,
    custom_role_permissions,
    role_permissions,
    workspace_of,
)
from obsigen.db.models import RoleBinding


def principal_kind(kind: str) -> PrincipalKind:
    if kind == "user":
        return "user"
    if kind == "apikey":
        return "apikey"
    raise ValueError(f"unknown principal kind {kind!r}")


async def load_principal(
    session: AsyncSession,
    tenant_id: str,
    kind: str,
    principal_id: str,
    *,
    mfa: bool = False,
    session_id: str | None = None,
    amr: Iterable[str] = (),
) -> Principal:
    checked_kind = principal_kind(kind)
    bindings = (
        await session.execute(
            select(RoleBinding.role, RoleBinding.scope).where(
                RoleBinding.tenant_id == tenant_id,
                RoleBinding.principal_kind == checked_kind,
                RoleBinding.principal_id == principal_id,
            )
        )
    ).all()
    custom_names = {role for role, _ in bindings if builtin_role(role) is None}
    custom = await custom_role_permissions(session, tenant_id, custom_names)

    roles: set[str] = set()
    granted: set[Permission] = set()
    per_workspace: defaultdict[str, set[Permission]] = defaultdict(set)
    for role, scope in bindings:
        permissions = role_permissions(role, custom)
        if permissions is None:
            continue
        if scope == TENANT_SCOPE:
            # Only tenant-wide roles count as "the principal's roles" (tool-policy rules match
            # on them); a workspace role must not act outside its workspace.
            roles.add(role)
            granted |= permissions
            continue
        workspace = workspace_of(scope)
        if workspace is not None:
            per_workspace[workspace] |= permissions
    return Principal(
        tenant_id=tenant_id,
        kind=checked_kind,
        id=principal_id,
        roles=frozenset(roles),
        granted=frozenset(granted),
        workspace_grants=MappingProxyType(
            {workspace: frozenset(perms) for workspace, perms in per_workspace.items()}
        ),
        mfa=mfa,
        session_id=session_id,
        amr=tuple(amr),
    )
