"""Creating and finding tenants."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.db.models import Tenant
from obsigen.errors import Conflict, InvalidInput, NotFound
from obsigen.residency import RegionError, normalise_region

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


async def create_tenant(session: AsyncSession, name: str, region: str = "eea") -> Tenant:
    if not _NAME.fullmatch(name):
        raise InvalidInput("tenant name: 2-63 characters, lowercase letters, digits and '-'")
    try:
        region = normalise_region(region)
    except RegionError as exc:
        raise InvalidInput(str(exc)) from exc
    if await session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise Conflict(f"tenant {name!r} exists")
    tenant = Tenant(name=name, region=region)
    session.add(tenant)
    await session.flush()
    return tenant


async def tenant_by_name(session: AsyncSession, name: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"no tenant named {name!r}")
    return tenant
