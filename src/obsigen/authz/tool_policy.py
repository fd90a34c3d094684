"""Per-tenant policy on tool calls: allow, deny, or require an approver's decision.

A policy is a versioned document stored in the tenant database. Rules are checked in order;
the first that matches the tool and one of the caller's roles decides. When none matches, the
tool's declared sensitivity decides (server tools) or ``client`` does (tools the API client
runs itself). With no stored policy, the built-in version 0 applies.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.assistant.hooks import Decision, PolicyDecision
from obsigen.authz.permissions import ROLE_NAME_PATTERN
from obsigen.authz.principal import Principal
from obsigen.db.tool_policy_models import ToolPolicyVersion
from obsigen.metrics import TOOL_CALLS
from obsigen.tools.interfaces import Sensitivity
from obsigen.tools.registry import ToolRegistry

ANY_TOOL = "*"
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PolicyRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools: list[str] = Field(min_length=1, max_length=100)
    # Built-in or custom role names; empty: every role.
    roles: list[Annotated[str, StringConstraints(pattern=ROLE_NAME_PATTERN)]] = Field(
        default_factory=list, max_length=10
    )
    decision: Decision
    reason: str = Field(default="", max_length=300)

    @field_validator("tools")
    @classmethod
    def _names(cls, tools: list[str]) -> list[str]:
        for name in tools:
            if name != ANY_TOOL and not _TOOL_NAME.fullmatch(name):
                raise ValueError(f"not a tool name: {name!r}")
        return tools


class SensitivityDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low: Decision = "allow"
    medium: Decision = "allow"
    high: Decision = "approval"
    client: Decision = "allow"


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[PolicyRule] = Field(default_factory=list, max_length=200)
    defaults: SensitivityDefaults = Field(default_factory=SensitivityDefaults)
    approval_ttl_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)


BUILT_IN = PolicyDocument()


def evaluate(
    document: PolicyDocument,
    version: int,
    roles: frozenset[str],
    tool: str,
    sensitivity: Sensitivity | Literal["client"],
) -> PolicyDecision:
    """The decision for one call; pure, so every branch is tested without a database."""
    ttl = document.approval_ttl_minutes * 60
    for index, rule in enumerate(document.rules):
        if tool not in rule.tools and ANY_TOOL not in rule.tools:
            continue
        if rule.roles and not roles.intersection(rule.roles):
            continue
        return PolicyDecision(
            rule.decision,
            rule=f"rule[{index}]",
            reason=rule.reason,
            version=version,
            approval_ttl_s=ttl,
        )
    decision: Decision = getattr(document.defaults, sensitivity)
    return PolicyDecision(
        decision, rule=f"default:{sensitivity}", version=version, approval_ttl_s=ttl
    )


async def active_policy(session: AsyncSession, tenant_id: str) -> tuple[int, PolicyDocument]:
    row = await session.scalar(
        select(ToolPolicyVersion)
        .where(ToolPolicyVersion.tenant_id == tenant_id)
        .order_by(ToolPolicyVersion.version.desc())
        .limit(1)
    )
    if row is None:
        return 0, BUILT_IN
    return row.version, PolicyDocument.model_validate(row.document)


async def store_policy(
    session: AsyncSession, principal: Principal, document: PolicyDocument
) -> tuple[int, PolicyDocument, PolicyDocument]:
    """Save a new version; returns (version, before, after) for the audit record."""
    version, before = await active_policy(session, principal.tenant_id)
    row = ToolPolicyVersion(
        tenant_id=principal.tenant_id,
        version=version + 1,
        document=document.model_dump(mode="json"),
        created_by_kind=principal.kind,
        created_by_id=principal.id,
    )
    session.add(row)
    await session.flush()
    return row.version, before, document


class TenantToolPolicy:
    """The turn's ToolPolicy hook, reading the tenant's active policy for every decision."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], tools: ToolRegistry) -> None:
        self._sessions = sessions
        self._tools = tools

    async def decide(
        self, principal: Principal, tool: str, arguments: dict[str, Any], *, server_side: bool
    ) -> PolicyDecision:
        async with self._sessions() as session:
            version, document = await active_policy(session, principal.tenant_id)
        registered = self._tools.get(tool) if server_side else None
        sensitivity: Sensitivity | Literal["client"] = (
            registered.sensitivity if registered is not None else "client"
        )
        decision = evaluate(document, version, principal.roles, tool, sensitivity)
        # A client tool's name is the API client's free text: never a label.
        TOOL_CALLS.labels(tool if registered is not None else "client", decision.decision).inc()
        return decision
