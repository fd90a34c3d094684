"""The tenant's safeguard policy: ``GET``/``PUT /api/v1/safeguards/policy``.

Administrative (``tenant:safeguards:manage`` needs a second factor, like every admin
permission); each change is a new version, audited as ``admin.change`` with before and after.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from obsigen.audit.events import AuditEvent, actor_of
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.config import SafeguardsSettings
from obsigen.errors import Conflict, InvalidInput
from obsigen.safeguards.pipeline import DetectionPipeline
from obsigen.safeguards.policy import (
    GuardPolicy,
    Mode,
    PolicyDocument,
    PolicyOutOfBounds,
    base_policy,
    resolve,
    store_policy,
    stored_policy,
)
from obsigen.services import Services
from obsigen.web.auth import require, services_of

router = APIRouter(prefix="/api/v1/safeguards", tags=["safeguards"])


class EffectivePolicy(BaseModel):
    mode: Mode
    threshold: float
    indirect_threshold: float
    judge: bool


class Bounds(BaseModel):
    modes: list[Mode]
    threshold_min: float
    threshold_max: float
    judge_available: bool


class SafeguardPolicyOut(BaseModel):
    version: int
    # "config": no stored policy, [safeguards] (and a deprecated override) applies.
    source: Literal["config", "tenant"]
    enabled: bool
    document: PolicyDocument
    effective: EffectivePolicy
    bounds: Bounds


def _effective(policy: GuardPolicy) -> EffectivePolicy:
    return EffectivePolicy(
        mode=policy.mode,
        threshold=policy.threshold,
        indirect_threshold=policy.indirect_threshold,
        judge=policy.judge,
    )


def _out(
    settings: SafeguardsSettings, tenant_id: str, version: int, document: PolicyDocument
) -> SafeguardPolicyOut:
    policy = (
        base_policy(settings, tenant_id) if version == 0 else resolve(settings, version, document)
    )
    return SafeguardPolicyOut(
        version=version,
        source="config" if version == 0 else "tenant",
        enabled=settings.enabled,
        document=document,
        effective=_effective(policy),
        bounds=Bounds(
            modes=list(settings.tenant_modes),
            threshold_min=settings.tenant_threshold_min,
            threshold_max=settings.tenant_threshold_max,
            judge_available=settings.judge.enabled,
        ),
    )


def _forget(services: Services, tenant_id: str) -> None:
    """Apply a change at once in this process (the others within ``policy_cache_s``)."""
    for guard in (services.hooks.input_guard, services.hooks.tool_output_guard):
        if isinstance(guard, DetectionPipeline) and guard.policies is not None:
            guard.policies.forget(tenant_id)


@router.get("/policy")
async def get_policy(
    request: Request, principal: Principal = require(Permission.SAFEGUARDS_READ)
) -> SafeguardPolicyOut:
    services = services_of(request)
    async with services.sessions() as session:
        version, document = await stored_policy(session, principal.tenant_id)
    return _out(services.settings.safeguards, principal.tenant_id, version, document)


@router.put("/policy")
async def put_policy(
    body: PolicyDocument,
    request: Request,
    principal: Principal = require(Permission.SAFEGUARDS_MANAGE),
) -> SafeguardPolicyOut:
    services = services_of(request)
    settings = services.settings.safeguards
    try:
        async with services.sessions.begin() as session:
            version, before_document, after_document = await store_policy(
                session, settings, principal, body
            )
    except PolicyOutOfBounds as exc:
        raise InvalidInput(str(exc)) from None
    except IntegrityError:
        # Another admin stored the same version number first.
        raise Conflict("the policy changed at the same time; read it again and retry") from None
    _forget(services, principal.tenant_id)
    before = _out(settings, principal.tenant_id, version - 1, before_document)
    after = _out(settings, principal.tenant_id, version, after_document)
    await services.audit.record(
        AuditEvent(
            type="admin.change",
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome="success",
            data={
                "target": "safeguard_policy",
                "version": version,
                "before": {
                    "version": before.version,
                    "document": before.document.model_dump(),
                    **before.effective.model_dump(),
                },
                "after": {
                    "version": version,
                    "document": after.document.model_dump(),
                    **after.effective.model_dump(),
                },
            },
        )
    )
    return after
