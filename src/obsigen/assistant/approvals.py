"""Tool calls that the policy parks for an approver: park, list, approve (then run) or deny.

A parked call is stored with the placeholder tool message the model saw. Approving runs the
tool once, as the requester, and puts its (scanned) result in place of the placeholder, so the
conversation continues with the real result. Four eyes: a requester cannot approve their own
call. The pending -> decided transition is a compare-and-set, so two approvers racing cannot
run a tool twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.assistant import tool_execution
from obsigen.assistant.hooks import PolicyDecision, TurnHooks
from obsigen.assistant.store import parse_arguments
from obsigen.audit.events import AuditEvent, actor_of, digest
from obsigen.audit.recorder import AuditRecorder
from obsigen.authz.principal import Principal
from obsigen.db.base import utcnow
from obsigen.db.models import Message, ToolCall
from obsigen.db.tool_policy_models import ToolApproval
from obsigen.errors import Conflict, Forbidden, NotFound
from obsigen.identity.principals import load_principal
from obsigen.inference.interfaces import ToolCallRequest
from obsigen.tenantkeys.bodies import seal_update
from obsigen.tools.interfaces import ToolContext
from obsigen.tools.registry import ToolRegistry

PENDING_TEXT = (
    "This tool call needs an approver's decision and has not run yet. "
    "Tell the user that it is waiting for approval."
)


async def park(
    session: AsyncSession,
    requester: Principal,
    *,
    conversation_id: str,
    interaction_id: str,
    tool_call_row_id: str,
    tool_message_id: str,
    call: ToolCallRequest,
    decision: PolicyDecision,
) -> ToolApproval:
    approval = ToolApproval(
        tenant_id=requester.tenant_id,
        conversation_id=conversation_id,
        interaction_id=interaction_id,
        tool_call_id=tool_call_row_id,
        tool_message_id=tool_message_id,
        call_id=call.id,
        tool=call.name,
        arguments=call.arguments,
        requested_by_kind=requester.kind,
        requested_by_id=requester.id,
        policy_version=decision.version,
        rule=decision.rule,
        expires_at=utcnow() + timedelta(seconds=decision.approval_ttl_s),
    )
    session.add(approval)
    await session.flush()
    return approval


async def access_approval_by_id(
    session: AsyncSession, principal: Principal, approval_id: str
) -> ToolApproval:
    approval = await session.scalar(
        select(ToolApproval)
        .where(ToolApproval.tenant_id == principal.tenant_id)
        .where(ToolApproval.id == approval_id)
    )
    if approval is None:
        raise NotFound("approval not found")
    return _with_expiry(approval)


async def list_approvals(
    session: AsyncSession, principal: Principal, status: str | None, limit: int
) -> Sequence[ToolApproval]:
    query = select(ToolApproval).where(ToolApproval.tenant_id == principal.tenant_id)
    if status == "pending":
        query = query.where(ToolApproval.status == "pending", ToolApproval.expires_at > utcnow())
    elif status == "expired":
        query = query.where(ToolApproval.status == "pending", ToolApproval.expires_at <= utcnow())
    elif status is not None:
        query = query.where(ToolApproval.status == status)
    rows = await session.scalars(query.order_by(ToolApproval.created_at.desc()).limit(limit))
    return [_with_expiry(row) for row in rows]


def _with_expiry(approval: ToolApproval) -> ToolApproval:
    # Expiry is derived on read rather than by a sweeper: nothing can approve a stale call.
    if approval.status == "pending" and approval.expires_at <= utcnow():
        approval.status = "expired"
    return approval


class ApprovalService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tools: ToolRegistry,
        hooks: TurnHooks,
        audit: AuditRecorder,
    ) -> None:
        self._sessions = sessions
        self._tools = tools
        self._hooks = hooks
        self._audit = audit

    async def decide(self, approver: Principal, approval_id: str, approve: bool) -> ToolApproval:
        async with self._sessions.begin() as session:
            approval = await access_approval_by_id(session, approver, approval_id)
            if approval.status != "pending":
                raise Conflict(f"the approval is {approval.status}")
            requested_by = (approval.requested_by_kind, approval.requested_by_id)
            if requested_by == (approver.kind, approver.id):
                raise Forbidden("a requester cannot approve their own tool call")
            status = "approved" if approve else "denied"
            claimed = await session.execute(
                update(ToolApproval)
                .where(ToolApproval.id == approval.id, ToolApproval.status == "pending")
                .values(
                    status=status,
                    decided_by_kind=approver.kind,
                    decided_by_id=approver.id,
                    decided_at=utcnow(),
                )
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict("the approval was decided concurrently")
            requester = await load_principal(
                session, approval.tenant_id, approval.requested_by_kind, approval.requested_by_id
            )
        await self._record(approver, approval, "approval.decided", decision=status)
        if approve:
            output, tool_status, duration_ms = await self._run(requester, approval)
        else:
            output, tool_status, duration_ms = "error: an approver denied this call", "denied", 0
        async with self._sessions.begin() as session:
            await session.execute(
                update(ToolCall)
                .where(ToolCall.id == approval.tool_call_id)
                .values(status=tool_status, result=output, duration_ms=duration_ms, decision=status)
            )
            body = await seal_update(session, approval.tenant_id, approval.tool_message_id, output)
            await session.execute(
                update(Message).where(Message.id == approval.tool_message_id).values(content=body)
            )
            await session.execute(
                update(ToolApproval).where(ToolApproval.id == approval.id).values(result=output)
            )
            refreshed = await session.get(ToolApproval, approval.id, populate_existing=True)
            assert refreshed is not None
        if approve:
            await self._record(
                approver,
                approval,
                "tool.call",
                executed_by="server",
                arguments_digest=digest(approval.arguments),
                decision="approved",
                status=tool_status,
                duration_ms=duration_ms,
                result_digest=digest(output),
            )
        return refreshed

    async def _run(self, requester: Principal, approval: ToolApproval) -> tuple[str, str, int]:
        tool = self._tools.get(approval.tool)
        started = time.perf_counter()
        arguments = parse_arguments(approval.arguments)
        if tool is None:
            return "error: the tool is no longer available", "error", 0
        if arguments is None:
            return "error: arguments must be a JSON object", "error", 0
        context = ToolContext(requester, approval.conversation_id, approval.interaction_id)
        outcome = await tool_execution.screen(
            self._hooks.tool_output_guard,
            await tool_execution.execute(tool, arguments, context),
            approval.tool,
            approval.tenant_id,
        )
        output, status = outcome.output, outcome.status
        return output, status, int((time.perf_counter() - started) * 1000)

    async def _record(
        self, approver: Principal, approval: ToolApproval, type_: str, **data: object
    ) -> None:
        await self._audit.record(
            AuditEvent(
                type=type_,
                tenant_id=approval.tenant_id,
                actor=actor_of(approver),
                outcome="success",
                interaction_id=approval.interaction_id,
                data={
                    "conversation_id": approval.conversation_id,
                    "approval_id": approval.id,
                    "tool": approval.tool,
                    "call_id": approval.call_id,
                    "policy_version": approval.policy_version,
                    "requested_by": {
                        "kind": approval.requested_by_kind,
                        "id": approval.requested_by_id,
                    },
                    **data,
                },
            )
        )
