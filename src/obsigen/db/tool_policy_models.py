"""Tables of the tool policy: versioned policy documents and the approvals queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, LongText, TenantScoped, UTCDateTime


class ToolPolicyVersion(TenantScoped, Base):
    """One version of a tenant's tool policy. Never updated: a change is a new version."""

    __tablename__ = "tool_policy_versions"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by_kind: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[str] = mapped_column(IdColumn)


class ToolApproval(TenantScoped, Base):
    """A tool call parked until an approver decides; run (once) only when approved in time."""

    __tablename__ = "tool_approvals"
    __table_args__ = (Index("ix_tool_approvals_status", "tenant_id", "status"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    interaction_id: Mapped[str] = mapped_column(IdColumn)
    tool_call_id: Mapped[str] = mapped_column(IdColumn)  # the tool_calls row
    tool_message_id: Mapped[str] = mapped_column(IdColumn)  # the placeholder tool message
    call_id: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(LongText)
    requested_by_kind: Mapped[str] = mapped_column(String(16))
    requested_by_id: Mapped[str] = mapped_column(IdColumn)
    policy_version: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    decided_by_id: Mapped[str | None] = mapped_column(IdColumn, default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    result: Mapped[str] = mapped_column(LongText, default="")
