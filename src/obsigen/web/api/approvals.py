"""Tool policy and the approvals queue: ``/api/v1/tool-policy``, ``/api/v1/approvals``.

Admin actions; MFA step-up for them arrives with the keys-and-tokens issue (#3).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from obsigen.assistant.approvals import ApprovalService, access_approval_by_id, list_approvals
from obsigen.audit.events import AuditEvent, actor_of
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.authz.tool_policy import PolicyDocument, active_policy, store_policy
from obsigen.db.tool_policy_models import ToolApproval
from obsigen.web.auth import require, services_of

router = APIRouter(prefix="/api/v1", tags=["tool policy"])


class PolicyOut(BaseModel):
    version: int
    document: PolicyDocument


class ApprovalOut(BaseModel):
    id: str
    conversation_id: str
    interaction_id: str
    call_id: str
    tool: str
    arguments: str
    requested_by: dict[str, str]
    policy_version: int
    rule: str
    status: str
    expires_at: datetime
    decided_by: dict[str, str] | None
    decided_at: datetime | None
    result: str
    created_at: datetime


def _approval(row: ToolApproval) -> ApprovalOut:
    decided_by = None
    if row.decided_by_kind and row.decided_by_id:
        decided_by = {"kind": row.decided_by_kind, "id": row.decided_by_id}
    return ApprovalOut(
        id=row.id,
        conversation_id=row.conversation_id,
        interaction_id=row.interaction_id,
        call_id=row.call_id,
        tool=row.tool,
        arguments=row.arguments,
        requested_by={"kind": row.requested_by_kind, "id": row.requested_by_id},
        policy_version=row.policy_version,
        rule=row.rule,
        status=row.status,
        expires_at=row.expires_at,
        decided_by=decided_by,
        decided_at=row.decided_at,
        result=row.result,
        created_at=row.created_at,
    )


@router.get("/tool-policy")
async def get_policy(
    request: Request, principal: Principal = require(Permission.TOOL_POLICY_READ)
) -> PolicyOut:
    async with services_of(request).sessions() as session:
        version, document = await active_policy(session, principal.tenant_id)
    return PolicyOut(version=version, document=document)


@router.put("/tool-policy")
async def put_policy(
    body: PolicyDocument,
    request: Request,
    principal: Principal = require(Permission.TOOL_POLICY_MANAGE),
) -> PolicyOut:
    services = services_of(request)
    async with services.sessions.begin() as session:
        version, before, after = await store_policy(session, principal, body)
    await services.audit.record(
        AuditEvent(
            type="admin.change",
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome="success",
            data=_change("tool_policy", version, before.model_dump(), after.model_dump()),
        )
    )
    return PolicyOut(version=version, document=after)


def _change(target: str, version: int, before: Any, after: Any) -> dict[str, Any]:
    return {"target": target, "version": version, "before": before, "after": after}


@router.get("/approvals")
async def approvals(
    request: Request,
    principal: Principal = require(Permission.APPROVALS_DECIDE),
    status: Literal["pending", "approved", "denied", "expired"] | None = Query(default="pending"),
    limit: int = Query(default=50, ge=1, le=200),
) -> list[ApprovalOut]:
    async with services_of(request).sessions() as session:
        rows = await list_approvals(session, principal, status, limit)
    return [_approval(row) for row in rows]


@router.get("/approvals/{approval_id}")
async def approval(
    approval_id: str,
    request: Request,
    principal: Principal = require(Permission.APPROVALS_DECIDE),
) -> ApprovalOut:
    async with services_of(request).sessions() as session:
        return _approval(await access_approval_by_id(session, principal, approval_id))


@router.post("/approvals/{approval_id}/approve")
async def approve(
    approval_id: str,
    request: Request,
    principal: Principal = require(Permission.APPROVALS_DECIDE),
) -> ApprovalOut:
    return _approval(await _approvals(request).decide(principal, approval_id, approve=True))


@router.post("/approvals/{approval_id}/deny")
async def deny(
    approval_id: str,
    request: Request,
    principal: Principal = require(Permission.APPROVALS_DECIDE),
) -> ApprovalOut:
    return _approval(await _approvals(request).decide(principal, approval_id, approve=False))


def _approvals(request: Request) -> ApprovalService:
    services = services_of(request)
    return ApprovalService(services.sessions, services.tools, services.hooks, services.audit)
