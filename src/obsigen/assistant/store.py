"""Persistence of a turn: conversation, messages and tool calls, in the tenant's database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.principal import Principal
from obsigen.db.access import access_conversation_by_id, messages_of, next_seq
from obsigen.db.base import new_id, utcnow
from obsigen.db.models import Conversation, Message, ToolCall
from obsigen.inference.interfaces import ChatMessage, ToolCallRequest
from obsigen.tenantkeys import bodies

TITLE_CHARS = 80
# Conversations this session created, each with the rows appended to it so far: their next
# seq and their history are known without asking the database again.
_CREATED = "obsigen.created_conversations"


async def open_conversation(
    session: AsyncSession, principal: Principal, conversation_id: str | None, model: str
) -> Conversation:
    """An existing conversation the principal may use, or a new one (inserted together with
    its first messages by :func:`append_messages`)."""
    if conversation_id is not None:
        return await access_conversation_by_id(session, principal, conversation_id)
    conversation = Conversation(
        id=new_id(),
        tenant_id=principal.tenant_id,
        owner_kind=principal.kind,
        owner_id=principal.id,
        model=model,
    )
    session.add(conversation)
    created: dict[str, list[Message]] = session.info.setdefault(_CREATED, {})
    created[conversation.id] = []
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
    *,
    tokens: tuple[int, int] | None = None,
) -> list[Message]:
    """``tokens``: the prompt and completion tokens of the model call that wrote the last
    message (an answer)."""
    created: list[Message] | None = session.info.get(_CREATED, {}).get(conversation.id)
    if created is None:
        seq = await next_seq(session, conversation)
        conversation.updated_at = utcnow()
    else:
        seq = len(created)
        if conversation in session.new:
            # Title first, then the insert: one INSERT instead of an INSERT and an UPDATE,
            # and the row exists before the messages that refer to it.
            conversation.title = _title(messages)
            await session.flush()
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
    if not conversation.title:
        title = _title(messages)
        if title:
            conversation.title = title
    if tokens is not None:
        rows[-1].prompt_tokens, rows[-1].completion_tokens = tokens
    await session.flush()
    for row, message in zip(rows, messages, strict=True):
        bodies.show_plaintext(session, row, message.content or "")
    if created is not None:
        created.extend(rows)
    return rows


def _title(messages: tuple[ChatMessage, ...]) -> str:
    """The first user message with text, on one line, cut to TITLE_CHARS ("": none)."""
    for message in messages:
        if message.role == "user" and message.content:
            title = message.content.strip().replace("\n", " ")[:TITLE_CHARS]
            if title:
                return title
    return ""


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
    created: list[Message] | None = session.info.get(_CREATED, {}).get(conversation.id)
    if created is not None:
        # Created in this session: every row is in memory, already in plaintext.
        return tuple(_to_chat(row) for row in created if row.status == "ok")
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
