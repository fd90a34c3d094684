"""Applies group-to-role mappings: the roles a user's external groups map to become role
bindings marked with their source, and the bindings that source granted earlier but no longer
maps are taken back. Bindings from any other source (an admin, another IdP, SCIM) are left
alone, so SSO never removes a role it did not grant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.audit.events import AuditEvent
from obsigen.authz.permissions import Role, builtin_role
from obsigen.authz.roles import TENANT_SCOPE
from obsigen.db.auth_models import CustomRole
from obsigen.db.federation_models import GroupRoleMapping
from obsigen.db.models import RoleBinding, User

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RoleSync:
    """What one sync changed for one user; ``events`` records it once the transaction commits."""

    user_id: str
    source: str
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    # Roles the source would take back but must not: the tenant's last active owner.
    kept: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.granted or self.revoked)

    def events(
        self, tenant_id: str, actor: dict[str, str], source_address: str | None = None
    ) -> list[AuditEvent]:
        target = {"kind": "user", "id": self.user_id}
        return [
            AuditEvent(
                type="admin.change",
                tenant_id=tenant_id,
                actor=actor,
                outcome="success",
                source_address=source_address,
                target=target,
                data={"action": action, "role": role, "scope": TENANT_SCOPE, "via": self.source},
            )
            for action, roles in (("role.grant", self.granted), ("role.revoke", self.revoked))
            for role in roles
        ]


async def mapped_roles(
    session: AsyncSession, tenant_id: str, source: str, groups: Iterable[str]
) -> set[str]:
    """The roles ``groups`` (from ``source``) map to; roles that no longer exist are dropped."""
    names = {group for group in groups if group}
    if not names:
        return set()
    rows = await session.scalars(
        select(GroupRoleMapping.role).where(
            GroupRoleMapping.tenant_id == tenant_id,
            GroupRoleMapping.source == source,
            GroupRoleMapping.group_name.in_(sorted(names)),
        )
    )
    roles = set(rows.all())
    custom = {role for role in roles if builtin_role(role) is None}
    if custom:
        existing = await session.scalars(
            select(CustomRole.name).where(
                CustomRole.tenant_id == tenant_id, CustomRole.name.in_(sorted(custom))
            )
        )
        roles -= custom - set(existing.all())
    return roles


async def _other_active_owner(session: AsyncSession, tenant_id: str, user_id: str) -> bool:
    owners = await session.scalars(
        select(RoleBinding.principal_id)
        .join(User, (User.id == RoleBinding.principal_id) & (User.tenant_id == tenant_id))
        .where(
            RoleBinding.tenant_id == tenant_id,
            RoleBinding.principal_kind == "user",
            RoleBinding.role == Role.OWNER.value,
            RoleBinding.scope == TENANT_SCOPE,
            User.status == "active",
        )
        .with_for_update()
    )
    return bool(set(owners.all()) - {user_id})


async def sync_roles(
    session: AsyncSession, tenant_id: str, user_id: str, source: str, roles: set[str]
) -> RoleSync:
    """Makes the tenant-wide bindings granted by ``source`` equal ``roles`` (see module doc)."""
    result = RoleSync(user_id=user_id, source=source)
    rows = (
        await session.execute(
            select(RoleBinding.role, RoleBinding.source).where(
                RoleBinding.tenant_id == tenant_id,
                RoleBinding.principal_kind == "user",
                RoleBinding.principal_id == user_id,
            )
        )
    ).all()
    held: dict[str, str] = {role: held_source for role, held_source in rows}  # noqa: C416
    for role in sorted(set(held) - roles):
        if held[role] != source:
            continue
        if role == Role.OWNER.value and not await _other_active_owner(session, tenant_id, user_id):
            log.warning("SSO sync keeps the last owner's role for user %s", user_id)
            result.kept.append(role)
            continue
        await session.execute(
            delete(RoleBinding).where(
                RoleBinding.tenant_id == tenant_id,
                RoleBinding.principal_kind == "user",
                RoleBinding.principal_id == user_id,
                RoleBinding.role == role,
                RoleBinding.source == source,
            )
        )
        result.revoked.append(role)
    for role in sorted(roles - set(held)):
        session.add(
            RoleBinding(
                tenant_id=tenant_id,
                principal_kind="user",
                principal_id=user_id,
                role=role,
                scope=TENANT_SCOPE,
                source=source,
            )
        )
        result.granted.append(role)
    if result.granted:
        await session.flush()
    return result
