"""Rebuilding a principal from the database, for work done later on its behalf (approved calls)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal, PrincipalKind
from obsigen.db.models import RoleBinding


async def load_principal(
    session: AsyncSession, tenant_id: str, kind: str, principal_id: str
) -> Principal:
    roles = await session.scalars(
        select(RoleBinding.role).where(
            RoleBinding.tenant_id == tenant_id,
            RoleBinding.principal_kind == kind,
            RoleBinding.principal_id == principal_id,
        )
    )
    principal_kind: PrincipalKind = "user" if kind == "user" else "apikey"
    return Principal(
        tenant_id=tenant_id,
        kind=principal_kind,
        id=principal_id,
        roles=frozenset(Role(role) for role in roles),
    )
