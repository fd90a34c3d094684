"""``/api/v1/conversations``: the caller's own conversations, their messages and tool calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from obsigen.assistant.turn import TurnFinished, TurnRequest, run_turn
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.db.access import (
    access_conversation_by_id,
    list_conversations,
    messages_of,
    tool_calls_of,
)
from obsigen.db.base import utcnow
from obsigen.db.models import Conversation, Message, ToolCall
from obsigen.errors import NotFound
from obsigen.inference.interfaces import ChatMessage
from obsigen.tenantkeys.bodies import open_bodies
from obsigen.web.api.openai_schemas import MAX_CONTENT_CHARS
from obsigen.web.auth import require, services_of
from obsigen.web.metrics import counted_turn

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])

ConversationId = str


class ConversationOut(BaseModel):
    id: str
    title: str
    model: str
    created_at: datetime
    updated_at: datetime


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(default="", max_length=200)


class MessageOut(BaseModel):
    id: str
    seq: int
    role: str
    content: str
    status: str
    error: str | None
    tool_call_id: str | None
    tool_calls: list[dict[str, Any]] | None
    interaction_id: str | None
    created_at: datetime


class ToolCallOut(BaseModel):
    id: str
    call_id: str
    interaction_id: str
    name: str
    arguments: str
    executed_by: str
    decision: str
    status: str
    result: str
    duration_ms: int
    created_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]
    tool_calls: list[ToolCallOut]


class SendMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    model: str | None = Field(default=None, max_length=200)


def _conversation(row: Conversation) -> ConversationOut:
    return ConversationOut(
        id=row.id,
        title=row.title,
        model=row.model,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _message(row: Message) -> MessageOut:
    return MessageOut.model_validate(row, from_attributes=True)


def _tool_call(row: ToolCall) -> ToolCallOut:
    return ToolCallOut.model_validate(row, from_attributes=True)


@router.get("")
async def list_(
    request: Request,
    principal: Principal = require(Permission.CONVERSATIONS_READ),
    limit: int = Query(default=50, ge=1, le=200),
    before: str | None = Query(default=None, max_length=32),
) -> list[ConversationOut]:
    async with services_of(request).sessions() as session:
        rows = await list_conversations(session, principal, limit, before)
    return [_conversation(row) for row in rows]


@router.post("", status_code=201)
async def create(
    body: ConversationIn,
    request: Request,
    principal: Principal = require(Permission.CONVERSATIONS_WRITE),
) -> ConversationOut:
    async with services_of(request).sessions.begin() as session:
        row = Conversation(
            tenant_id=principal.tenant_id,
            owner_kind=principal.kind,
            owner_id=principal.id,
            title=body.title,
        )
        session.add(row)
        await session.flush()
        return _conversation(row)


@router.get("/{conversation_id}")
async def get(
    conversation_id: ConversationId,
    request: Request,
    principal: Principal = require(Permission.CONVERSATIONS_READ),
) -> ConversationDetail:
    async with services_of(request).sessions() as session:
        row = await access_conversation_by_id(session, principal, conversation_id)
        messages = await messages_of(session, row)
        await open_bodies(session, messages)
        calls = await tool_calls_of(session, row)
    return ConversationDetail(
        **_conversation(row).model_dump(),
        messages=[_message(m) for m in messages],
        tool_calls=[_tool_call(c) for c in calls],
    )


@router.patch("/{conversation_id}")
async def rename(
    conversation_id: ConversationId,
    body: ConversationIn,
    request: Request,
    principal: Principal = require(Permission.CONVERSATIONS_WRITE),
) -> ConversationOut:
    async with services_of(request).sessions.begin() as session:
        row = await access_conversation_by_id(session, principal, conversation_id)
        row.title = body.title
        row.updated_at = utcnow()
        return _conversation(row)


@router.delete("/{conversation_id}", status_code=204)
async def delete(
    conversation_id: ConversationId,
    request: Request,
    principal: Principal = require(Permission.CONVERSATIONS_WRITE),
) -> Response:
    async with services_of(request).sessions.begin() as session:
        row = await access_conversation_by_id(session, principal, conversation_id)
        await session.delete(row)
    return Response(status_code=204)


@router.get("/{conversation_id}/messages")
async def list_messages(
    conversation_id: ConversationId,
    request: Request,
    principal: Principal = require(Permission.CONVERSATIONS_READ),
) -> list[MessageOut]:
    async with services_of(request).sessions() as session:
        row = await access_conversation_by_id(session, principal, conversation_id)
        messages = await messages_of(session, row)
        await open_bodies(session, messages)
        return [_message(m) for m in messages]


@router.post("/{conversation_id}/messages", status_code=201)
async def send_message(
    conversation_id: ConversationId,
    body: SendMessageIn,
    request: Request,
    principal: Principal = require(Permission.CONVERSATIONS_WRITE),
) -> MessageOut:
    services = services_of(request)
    async with services.sessions() as session:
        conversation = await access_conversation_by_id(session, principal, conversation_id)
    catalog = request.app.state.catalog
    model = body.model or conversation.model or (await catalog.models() or [""])[0]
    if not await catalog.has(model):
        raise NotFound(f"model {model!r} is not served here; see GET /v1/models")
    turn = TurnRequest(
        principal=principal,
        model=model,
        messages=(ChatMessage("user", body.content),),
        conversation_id=conversation.id,
        server_tools=services.settings.inference.offers_server_tools,
        source_address=request.client.host if request.client else None,
    )
    finished = None
    async for event in counted_turn(run_turn(services.turn, turn)):
        if isinstance(event, TurnFinished):
            finished = event
    assert finished is not None
    async with services.sessions() as session:
        message = await session.get(Message, finished.message_id)
        assert message is not None
        await open_bodies(session, [message])
        return _message(message)
