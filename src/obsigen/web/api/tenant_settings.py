"""A tenant's settings for its admins: retention periods (``/api/v1/retention``) and the data
map of ``obsigen doctor`` for this tenant (``/api/v1/admin/doctor``), read-only.

The data map names stores by their kind, never by host, port, path or bucket, and carries no
secret (``obsigen.doctor_data``, module docstring): what a tenant needs for its records of
processing, not a map of the operator's infrastructure.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.authz.roles import denial_event
from obsigen.doctor_data import data_map
from obsigen.errors import Forbidden
from obsigen.retention.policy import PERIODS, PeriodChoice
from obsigen.retention.tenant_settings import save_tenant_retention, tenant_policy
from obsigen.web.auth import require, services_of
from obsigen.web.sso import client_address

router = APIRouter(prefix="/api/v1", tags=["tenant settings"])


class PeriodOut(BaseModel):
    days: int = Field(description="The period that applies now")
    source: Literal["default", "tenant", "operator"]
    tenant_value: int | None = Field(description="What the tenant's admins chose, if anything")
    min: int
    max: int
    locked: bool = Field(description="An operator override decides it; it cannot be changed")


class RetentionOut(BaseModel):
    files_days: PeriodOut
    artifacts_days: PeriodOut
    conversations_days: PeriodOut
    audit_days: PeriodOut


class RetentionIn(BaseModel):
    """The tenant's choices; a period left out or null follows the operator's default."""

    model_config = ConfigDict(extra="forbid")

    files_days: int | None = Field(default=None, ge=1, le=36_500)
    artifacts_days: int | None = Field(default=None, ge=1, le=36_500)
    conversations_days: int | None = Field(default=None, ge=1, le=36_500)
    audit_days: int | None = Field(default=None, ge=1, le=36_500)


class DataRowOut(BaseModel):
    data: str
    stored: str
    region: str
    retention: str
    encryption: str


class DoctorOut(BaseModel):
    residency_region: str
    rows: list[DataRowOut]


def _period(choice: PeriodChoice) -> PeriodOut:
    return PeriodOut(
        days=choice.days,
        source=choice.source,
        tenant_value=choice.stored,
        min=choice.minimum,
        max=choice.maximum,
        locked=choice.locked,
    )


async def _retention(request: Request, tenant_id: str) -> RetentionOut:
    services = services_of(request)
    async with services.sessions() as session:
        policy, name = await tenant_policy(session, services.settings.retention, tenant_id)
    choices = policy.explain(tenant_id, name)
    return RetentionOut(**{period: _period(choices[period]) for period in PERIODS})


@router.get("/retention")
async def retention_get(
    request: Request, principal: Principal = require(Permission.SETTINGS_READ)
) -> RetentionOut:
    return await _retention(request, principal.tenant_id)


@router.put("/retention")
async def retention_put(
    body: RetentionIn,
    request: Request,
    principal: Principal = require(Permission.RETENTION_MANAGE),
) -> RetentionOut:
    services = services_of(request)
    try:
        async with services.sessions.begin() as session:
            change = await save_tenant_retention(
                session, principal, services.settings.retention, body.model_dump()
            )
    except Forbidden as exc:
        target = {"kind": "tenant_settings", "id": "retention"}
        await services.audit.record(
            denial_event(principal, "retention.update", target, exc.detail, client_address(request))
        )
        raise
    await services.audit.record(change.event(principal, client_address(request)))
    return await _retention(request, principal.tenant_id)


@router.get("/admin/doctor")
async def doctor(
    request: Request, principal: Principal = require(Permission.SETTINGS_READ)
) -> DoctorOut:
    """``obsigen doctor``'s data map for this tenant: its own retention periods, stores by kind."""
    services = services_of(request)
    async with services.sessions() as session:
        policy, name = await tenant_policy(
            session, services.settings.retention, principal.tenant_id
        )
    rows = data_map(
        services.settings, retention=policy.for_tenant(principal.tenant_id, name), locations=False
    )
    return DoctorOut(
        residency_region=services.settings.residency.region,
        rows=[DataRowOut(**row.as_dict()) for row in rows],
    )
