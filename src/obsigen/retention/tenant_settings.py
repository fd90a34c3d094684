"""A tenant's own retention choices (``PUT /api/v1/retention``): validated against the operator's
``[retention.tenant_limits]`` and overrides, stored in ``tenant_settings``, returned as an
``AdminChange`` for the caller to audit once the transaction has committed."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.authz.roles import AdminChange
from obsigen.config import DaysRange, RetentionSettings
from obsigen.db.base import utcnow
from obsigen.db.models import Tenant
from obsigen.db.tenant_settings_models import TenantSettings
from obsigen.errors import Conflict, Forbidden, InvalidInput, MfaRequired
from obsigen.retention.policy import PERIODS, RetentionPolicy, load_stored


async def tenant_policy(
    session: AsyncSession, settings: RetentionSettings, tenant_id: str
) -> tuple[RetentionPolicy, str | None]:
    """The policy with this tenant's stored choices, and the tenant's name (for overrides)."""
    name = await session.scalar(select(Tenant.name).where(Tenant.id == tenant_id))
    return RetentionPolicy(settings, await load_stored(session, tenant_id)), name


def _check(
    policy: RetentionPolicy, tenant_id: str, name: str | None, chosen: Mapping[str, int | None]
) -> None:
    unknown = sorted(set(chosen) - set(PERIODS))
    if unknown:
        raise InvalidInput(f"unknown retention period(s): {', '.join(unknown)}")
    current = policy.explain(tenant_id, name)
    for period, days in chosen.items():
        if days is None:
            continue
        if current[period].locked:
            # The operator's per-tenant override decides this period (docs/retention.md).
            raise Conflict(
                f"{period} is set for this tenant by the operator's configuration "
                "(retention.tenant_overrides) and cannot be changed here"
            )
        limits: DaysRange = getattr(policy.settings.tenant_limits, period)
        if not limits.min <= days <= limits.max:
            raise InvalidInput(
                f"{period}: between {limits.min} and {limits.max} days (retention.tenant_limits)"
            )


async def save_tenant_retention(
    session: AsyncSession,
    actor: Principal,
    settings: RetentionSettings,
    chosen: Mapping[str, int | None],
) -> AdminChange:
    """Replace the tenant's choices with ``chosen`` (None or absent: the operator's default)."""
    # The web edge checks the same; repeated so that no other caller can skip it.
    if not actor.can(Permission.RETENTION_MANAGE):
        raise Forbidden(f"requires {Permission.RETENTION_MANAGE.value}")
    if not actor.mfa:
        raise MfaRequired(f"{Permission.RETENTION_MANAGE.value} needs a second factor")
    tenant_id = actor.tenant_id
    policy, name = await tenant_policy(session, settings, tenant_id)
    _check(policy, tenant_id, name, chosen)
    row = await session.scalar(
        select(TenantSettings).where(TenantSettings.tenant_id == tenant_id).with_for_update()
    )
    before = {period: getattr(row, period) if row else None for period in PERIODS}
    if row is None:
        row = TenantSettings(tenant_id=tenant_id)
        session.add(row)
    for period in PERIODS:
        setattr(row, period, chosen.get(period))
    row.updated_at = utcnow()
    row.updated_by_id = actor.id
    try:
        await session.flush()
    except IntegrityError:  # the first save of this tenant raced another
        raise Conflict("the retention settings changed meanwhile: reload and retry") from None
    after = {period: getattr(row, period) for period in PERIODS}
    return AdminChange(
        "retention.update", {"kind": "tenant_settings", "id": "retention"}, before, after
    )
