"""Tenant-scoped access to conversation data: every read funnels through these functions.

One condition per line. A row that is missing, in another tenant, or owned by someone else
raises the same NotFound, so ids of other tenants and users never leak.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.principal import Principal
from obsigen.db.models import Conversation, Message, ToolCall
from obsigen.errors import NotFound


def _owned_conversations(principal: Principal) -> Select[Conversation]:
    return select(Conversation).where(
        Conversation.tenant_id == principal.tenant_id,
        Conversation.owner_kind == principal.kind,
        Conversation.owner_id == principal.id,
    )


async def access_conversation_by_id(
    session: AsyncSession, principal: Principal, conversation_id: str
) -> Conversation:
    conversation = await session.scalar(
        _owned_conversations(principal).where(Conversation.id == conversation_id)
    )
    if conversation is None:
        raise NotFound("conversation not found")
    return conversation


async def list_conversations(
    session: AsyncSession, principal: Principal, limit: int, before: str | None = None
) -> Sequence[Conversation]:
    query = _owned_conversations(principal)
    if before is not None:
        anchor = await access_conversation_by_id(session, principal, before)
        query = query.where(
            (Conversation.updated_at < anchor.updated_at)
            | ((Conversation.updated_at == anchor.updated_at) & (Conversation.id < anchor.id))
        )
    query = query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def messages_of(session: AsyncSession, conversation: Conversation) -> Sequence[Message]:
    return (
        await session.scalars(
            select(Message)
            .where(Message.tenant_id == conversation.tenant_id)
            .where(Message.conversation_id == conversation.id)
            .order_by(Message.seq)
        )
    ).all()


async def tool_calls_of(session: AsyncSession, conversation: Conversation) -> Sequence[ToolCall]:
    return (
        await session.scalars(
            select(ToolCall)
            .where(ToolCall.tenant_id == conversation.tenant_id)
            .where(ToolCall.conversation_id == conversation.id)
            .order_by(ToolCall.created_at, ToolCall.id)
        )
    ).all()


async def next_seq(session: AsyncSession, conversation: Conversation) -> int:
    last = await session.scalar(
        select(func.max(Message.seq)).where(Message.conversation_id == conversation.id)
    )
    return 0 if last is None else last + 1
