"""``POST /v1/chat/completions``: OpenAI-compatible, streamed or not, tools run server-side."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from obsigen.assistant.turn import (
    ContentDelta,
    ToolActivity,
    TurnEvent,
    TurnFinished,
    TurnRequest,
    TurnStarted,
    run_turn,
)
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.errors import NotFound, ObsigenError
from obsigen.ratelimit.budget import Reservation
from obsigen.ratelimit.middleware import (
    estimate_tokens,
    release_tokens,
    reserve_tokens,
    settle_tokens,
)
from obsigen.web.api.openai_schemas import ChatCompletionIn, tool_calls_out
from obsigen.web.auth import require, services_of
from obsigen.web.metrics import counted_turn

router = APIRouter(tags=["openai"])

CONVERSATION_HEADER = "X-Obsigen-Conversation-Id"


def offer_server_tools(body: ChatCompletionIn, request: Request) -> bool:
    services = services_of(request)
    if body.choice in services.tools:
        return True
    if body.server_tools is not None:
        return body.server_tools
    return services.settings.inference.offers_server_tools


def turn_request(body: ChatCompletionIn, principal: Principal, request: Request) -> TurnRequest:
    return TurnRequest(
        principal=principal,
        model=body.model,
        messages=tuple(m.to_chat() for m in body.messages),
        conversation_id=body.conversation_id,
        client_tools=tuple(t.to_spec() for t in body.tools or ()),
        tool_choice=body.choice,
        server_tools=offer_server_tools(body, request),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stops,
        seed=body.seed,
        source_address=request.client.host if request.client else None,
    )


async def prime(events: AsyncIterator[TurnEvent]) -> tuple[TurnStarted, list[TurnEvent]]:
    """Run the turn up to its first output, so early failures still get a proper status."""
    started: TurnStarted | None = None
    buffered: list[TurnEvent] = []
    async for event in events:
        if isinstance(event, TurnStarted):
            started = event
            continue
        buffered.append(event)
        break
    assert started is not None, "a turn always starts before it produces output"
    return started, buffered


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionIn,
    request: Request,
    principal: Principal = require(Permission.CHAT_COMPLETIONS_CREATE),
) -> JSONResponse | StreamingResponse:
    services = services_of(request)
    if not await request.app.state.catalog.has(body.model):
        raise NotFound(f"model {body.model!r} is not served here; see GET /v1/models")
    turn = turn_request(body, principal, request)
    estimate = estimate_tokens(
        (m.content or "" for m in turn.messages),
        turn.max_tokens or services.settings.inference.max_tokens,
    )
    # Held before the model is called, so concurrent requests cannot overspend a budget.
    reservation = await reserve_tokens(request, principal, estimate)
    try:
        events = counted_turn(run_turn(services.turn, turn))
        started, buffered = await prime(events)
    except BaseException:
        await release_tokens(request, reservation)
        raise
    headers = {CONVERSATION_HEADER: started.conversation_id}
    completion_id = f"chatcmpl-{started.interaction_id}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = _settled(
            request,
            reservation,
            _sse(events, buffered, completion_id, created, body.model, include_usage),
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
    finished = None
    try:
        async for event in _replayed(buffered, events):
            if isinstance(event, TurnFinished):
                finished = event
    except BaseException:
        await release_tokens(request, reservation)
        raise
    assert finished is not None
    await settle_tokens(request, reservation, finished.usage.total_tokens)
    return JSONResponse(
        _completion_json(finished, completion_id, created, body.model), headers=headers
    )


async def _settled(
    request: Request, reservation: Reservation, stream: AsyncIterator[bytes | TurnFinished]
) -> AsyncIterator[bytes]:
    """Passes the SSE bytes through; charges the real usage once the turn finished, or
    returns the reservation when it did not (error, client gone)."""
    finished: TurnFinished | None = None
    try:
        async for item in stream:
            if isinstance(item, TurnFinished):
                finished = item
            else:
                yield item
    finally:
        if finished is not None:
            await settle_tokens(request, reservation, finished.usage.total_tokens)
        else:
            await release_tokens(request, reservation)


async def _replayed(
    buffered: list[TurnEvent], events: AsyncIterator[TurnEvent]
) -> AsyncIterator[TurnEvent]:
    """The events ``prime`` already took, then the rest of the turn."""
    for event in buffered:
        yield event
    async for event in events:
        yield event


def _completion_json(
    finished: TurnFinished, completion_id: str, created: int, model: str
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": finished.content}
    if finished.client_tool_calls:
        message["tool_calls"] = tool_calls_out(finished.client_tool_calls)
        message["content"] = finished.content or None
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finished.finish_reason}],
        "usage": _usage_json(finished),
        "conversation_id": finished.conversation_id,
    }


def _usage_json(finished: TurnFinished) -> dict[str, int]:
    usage = finished.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


async def _sse(
    events: AsyncIterator[TurnEvent],
    buffered: list[TurnEvent],
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes | TurnFinished]:
    """The SSE body; the TurnFinished event itself is passed along (not sent) so the caller
    can charge its usage."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for event in _replayed(buffered, events):
            if isinstance(event, ContentDelta):
                yield chunk({"content": event.text})
            elif isinstance(event, ToolActivity):
                # Server-side tool runs are ours; clients see them via the conversation API.
                continue
            elif isinstance(event, TurnFinished):
                yield event
                if event.client_tool_calls:
                    calls = [
                        {"index": i, **call}
                        for i, call in enumerate(tool_calls_out(event.client_tool_calls))
                    ]
                    yield chunk({"tool_calls": calls})
                yield chunk({}, event.finish_reason, conversation_id=event.conversation_id)
                if include_usage:
                    usage_chunk = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": _usage_json(event),
                    }
                    yield b"data: " + json.dumps(usage_chunk).encode() + b"\n\n"
    except ObsigenError as exc:
        # Headers are gone: report in-band, as OpenAI-compatible servers do.
        error = {"error": {"type": exc.type_slug, "message": exc.detail, "code": exc.status}}
        yield b"data: " + json.dumps(error).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
