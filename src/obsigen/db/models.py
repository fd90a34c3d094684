"""The relational data model. Every table but ``tenants`` is tenant-scoped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, LongText, TenantScoped, UTCDateTime, new_id, utcnow


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    region: Mapped[str] = mapped_column(String(8), default="eea")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(TenantScoped, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    # Issue #3 moves this under envelope encryption with the tenant's KEK.
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default="active")


class RoleBinding(TenantScoped, Base):
    """Grants a role to a principal (user or API key) in a scope (the tenant, for now)."""

    __tablename__ = "role_bindings"
    __table_args__ = (UniqueConstraint("tenant_id", "principal_kind", "principal_id", "role"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    principal_kind: Mapped[str] = mapped_column(String(16))  # "user" | "apikey"
    principal_id: Mapped[str] = mapped_column(IdColumn)
    role: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(64), default="tenant")
    # "local" (an admin or the CLI), "idp:<id>" (SSO group mapping) or "scim": a group sync
    # removes only the bindings its own source granted.
    source: Mapped[str] = mapped_column(String(40), default="local")


class ApiKey(TenantScoped, Base):
    __tablename__ = "api_keys"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # Public lookup handle embedded in the key; the secret part is only stored hashed.
    lookup: Mapped[str] = mapped_column(String(24), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The user a key acts for, if any: deprovisioning that user revokes it (docs/scim.md).
    owner_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )


class Conversation(TenantScoped, Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_owner", "tenant_id", "owner_kind", "owner_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(IdColumn)
    title: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(TenantScoped, Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # system | user | assistant | tool
    content: Mapped[str] = mapped_column(LongText, default="")
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | failed
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    # For role == "tool": which call this answers. For assistant: calls handed to the client.
    tool_call_id: Mapped[str | None] = mapped_column(String(64), default=None)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    interaction_id: Mapped[str | None] = mapped_column(IdColumn, default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)


class ToolCall(TenantScoped, Base):
    __tablename__ = "tool_calls"

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    interaction_id: Mapped[str] = mapped_column(IdColumn)
    call_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(LongText, default="")
    executed_by: Mapped[str] = mapped_column(String(16))  # server | client
    decision: Mapped[str] = mapped_column(String(16), default="allow")
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | error | returned
    result: Mapped[str] = mapped_column(LongText, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


# --- audit trail (issue #5) ------------------------------------------------------------------
# Not tenant-scoped rows in the usual sense: no foreign key to tenants, because deleting a
# tenant must not delete the record of what happened in it, and no UPDATE or DELETE by the
# application (docs/audit.md: grants). Sequence numbers are per tenant and gap-free.


class AuditEventRecord(Base):
    """One hash-chained audit event; ``record`` is the canonical JSON the hash covers."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("event_id"),
        Index("ix_audit_events_time", "tenant_id", "time"),
        Index("ix_audit_events_interaction", "tenant_id", "interaction_id"),
    )

    tenant_id: Mapped[str] = mapped_column(IdColumn, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(IdColumn)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    interaction_id: Mapped[str | None] = mapped_column(IdColumn, default=None)
    record: Mapped[str] = mapped_column(LongText)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The newest link of a tenant's chain; writers lock this row to append in turn."""

    __tablename__ = "audit_chain_heads"

    tenant_id: Mapped[str] = mapped_column(IdColumn, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    # Where verification starts: seq 0 and the genesis hash until a retention purge.
    anchor_seq: Mapped[int] = mapped_column(BigInteger)
    anchor_hash: Mapped[str] = mapped_column(String(64))
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger)
    checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditCheckpoint(Base):
    """A signature over a tenant's chain at ``seq``: rewriting history needs the signing key."""

    __tablename__ = "audit_checkpoints"

    tenant_id: Mapped[str] = mapped_column(IdColumn, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(128))
    algorithm: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(1024))
    public_jwk: Mapped[str] = mapped_column(String(2048))
