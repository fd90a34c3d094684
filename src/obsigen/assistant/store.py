"""Persistence of a turn: conversation, messages and tool calls, in the tenant's database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.principal import Principal
from obsigen.db.access import access_conversation_by_id, messages_of, next_seq
from obsigen.db.base import utcnow
from obsigen.db.models import Conversation, Message, ToolCall
from obsigen.inference.interfaces import ChatMessage, ToolCallRequest
from obsigen.tenantkeys import bodies

TITLE_CHARS = 80


async def open_conversation(
    session: AsyncSession, principal: Principal, conversation_id: str | None, model: str
) -> Conversation:
    if conversation_id is not None:
        return await access_conversation_by_id(session, principal, conversation_id)
    conversation = Conversation(
        tenant_id=principal.tenant_id, owner_kind=principal.kind, owner_id=principal.id, model=model
    )
    session.add(conversation)
    await session.flush()
    return conversation


def _calls_json(calls: tuple[ToolCallRequest, ...]) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


async def append_messages(
    session: AsyncSession,
    conversation: Conversation,
    messages: tuple[ChatMessage, ...],
    interaction_id: str,
) -> list[Message]:
    seq = await next_seq(session, conversation)
    rows = []
    for offset, message in enumerate(messages):
        row = Message(
            tenant_id=conversation.tenant_id,
            conversation_id=conversation.id,
            seq=seq + offset,
            role=message.role,
            tool_call_id=message.tool_call_id,
            tool_calls=_calls_json(message.tool_calls),
            interaction_id=interaction_id,
        )
        # Sealed under the tenant's data key when tenant encryption is on (docs/tenant-keys.md).
        await bodies.seal_body(session, row, message.content or "")
        session.add(row)
        rows.append(row)
        if not conversation.title and message.role == "user" and message.content:
            conversation.title = message.content.strip().replace("\n", " ")[:TITLE_CHARS]
    conversation.updated_at = utcnow()
    await session.flush()
    for row, message in zip(rows, messages, strict=True):
        bodies.show_plaintext(session, row, message.content or "")
    return rows


async def mark_failed(session: AsyncSession, message_ids: list[str], reason: str) -> None:
    await session.execute(
        update(Message)
        .where(Message.id.in_(message_ids))
        .values(status="failed", error=reason[:500])
    )


async def record_tool_call(session: AsyncSession, row: ToolCall) -> None:
    session.add(row)
    await session.flush()


def _to_chat(row: Message) -> ChatMessage:
    calls = tuple(
        ToolCallRequest(id=c["id"], name=c["name"], arguments=c["arguments"])
        for c in (row.tool_calls or [])
    )
    return ChatMessage(
        role=row.role,  # type: ignore[arg-type]
        content=row.content,
        tool_calls=calls,
        tool_call_id=row.tool_call_id,
    )


async def history(session: AsyncSession, conversation: Conversation) -> tuple[ChatMessage, ...]:
    """What the model sees: the conversation so far, without turns that failed."""
    rows = await messages_of(session, conversation)
    await bodies.open_bodies(session, rows)
    return tuple(_to_chat(row) for row in rows if row.status == "ok")


def arguments_of(call: ToolCallRequest) -> dict[str, Any] | None:
    return parse_arguments(call.arguments)


def parse_arguments(text: str) -> dict[str, Any] | None:
    """A tool call's arguments as a JSON object, or None when they are anything else."""
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
