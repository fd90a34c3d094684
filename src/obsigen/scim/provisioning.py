"""What provisioning does to the platform beyond SCIM's own rows: a deactivated or deleted user
loses every API key and session at once, and a user's SCIM groups become role bindings through
the tenant's group mappings (source ``scim``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.db.base import utcnow
from obsigen.db.federation_models import SCIM_SOURCE
from obsigen.db.models import ApiKey, RoleBinding, User
from obsigen.db.scim_models import ScimGroup, ScimGroupMember
from obsigen.federation.group_roles import mapped_roles, sync_roles
from obsigen.scim.resources import Effects, ScimContext

ACTIVE = "active"
INACTIVE = "inactive"


async def revoke_api_keys(session: AsyncSession, tenant_id: str, user_id: str) -> int:
    result = await session.execute(
        update(ApiKey)
        .where(
            ApiKey.tenant_id == tenant_id,
            ApiKey.owner_user_id == user_id,
            ApiKey.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def deactivate(
    session: AsyncSession, context: ScimContext, user: User, effects: Effects
) -> None:
    """Status inactive, API keys revoked now; sessions end before and after the commit (the
    caller runs ``effects.end_sessions``) so no login can slip in between."""
    user.status = INACTIVE
    revoked = await revoke_api_keys(session, context.tenant_id, user.id)
    effects.end_sessions.add(user.id)
    effects.change(context, "scim.user.deactivate", "user", user.id, api_keys_revoked=revoked)


async def remove_user(
    session: AsyncSession, context: ScimContext, user: User, effects: Effects
) -> None:
    """Deletes the account: keys revoked, sessions ended (see ``deactivate``), role bindings
    and the user row removed (memberships, SCIM rows and second factors cascade)."""
    revoked = await revoke_api_keys(session, context.tenant_id, user.id)
    effects.end_sessions.add(user.id)
    await session.execute(
        delete(RoleBinding).where(
            RoleBinding.tenant_id == context.tenant_id,
            RoleBinding.principal_kind == "user",
            RoleBinding.principal_id == user.id,
        )
    )
    await session.delete(user)
    await session.flush()
    effects.change(context, "scim.user.delete", "user", user.id, api_keys_revoked=revoked)


async def group_names_of(session: AsyncSession, tenant_id: str, user_id: str) -> list[str]:
    rows = await session.scalars(
        select(ScimGroup.display_name)
        .join(ScimGroupMember, ScimGroupMember.group_id == ScimGroup.id)
        .where(
            ScimGroup.tenant_id == tenant_id,
            ScimGroupMember.tenant_id == tenant_id,
            ScimGroupMember.user_id == user_id,
        )
    )
    return list(rows.all())


async def sync_group_roles(
    session: AsyncSession, context: ScimContext, user_ids: Iterable[str], effects: Effects
) -> None:
    """Makes each user's ``scim`` role bindings match what its groups map to, audited."""
    for user_id in sorted(set(user_ids)):
        groups = await group_names_of(session, context.tenant_id, user_id)
        roles = await mapped_roles(session, context.tenant_id, SCIM_SOURCE, groups)
        change = await sync_roles(session, context.tenant_id, user_id, SCIM_SOURCE, roles)
        effects.events.extend(
            change.events(context.tenant_id, context.caller.actor, context.source_address)
        )
