"""One chat turn, top to bottom as in DESIGN.md's picture.

    persist the prompt [audit] -> input safeguards [audit] -> redact for inference
    -> model <-> tool loop (policy [audit] -> run -> scan output [audit])
    -> output filters -> restore placeholders -> persist the answer [audit] -> stream

Authentication, rate limiting and authorization happened at the web edge before this runs.
A failure at any step ends the turn with a clear error, keeps what the user sent (marked
failed, with the reason), and is audited.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.assistant import approvals, store, tool_execution
from obsigen.assistant.hooks import GuardResult, PolicyDecision, Redaction, TurnHooks
from obsigen.assistant.tool_execution import ToolOutcome
from obsigen.audit.events import AuditEvent, actor_of, digest
from obsigen.audit.recorder import AuditRecorder
from obsigen.authz.principal import Principal
from obsigen.db.deferred import retry_when_back
from obsigen.db.models import ToolCall
from obsigen.errors import (
    DatabaseUnavailable,
    InvalidInput,
    ObsigenError,
    UpstreamFailed,
    UpstreamTimeout,
)
from obsigen.inference.errors import InferenceError, InferenceTimeout
from obsigen.inference.interfaces import (
    ChatMessage,
    CompletionRequest,
    FinishReason,
    InferenceProvider,
    ToolCallRequest,
    ToolChoice,
    ToolSpec,
    Usage,
)
from obsigen.tenantkeys.bodies import prepare_sealing
from obsigen.tools.interfaces import ToolContext
from obsigen.tools.registry import ToolRegistry


class InputBlocked(ObsigenError):
    status = 400
    type_slug = "input-blocked"
    title = "The message was blocked by a content safeguard"


@dataclass(frozen=True, slots=True)
class TurnRequest:
    principal: Principal
    model: str
    messages: tuple[ChatMessage, ...]
    conversation_id: str | None = None
    client_tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    server_tools: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    source_address: str | None = None


@dataclass(frozen=True, slots=True)
class ContentDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolActivity:
    call_id: str
    name: str
    decision: str
    status: str
    approval_id: str | None = None  # set when the call waits for an approver


@dataclass(frozen=True, slots=True)
class _ServerToolResult:
    call: ToolCallRequest
    message: ChatMessage
    activity: ToolActivity
    tool_call_row_id: str
    decision: PolicyDecision


@dataclass(frozen=True, slots=True)
class TurnStarted:
    conversation_id: str
    interaction_id: str


@dataclass(frozen=True, slots=True)
class TurnFinished:
    conversation_id: str
    interaction_id: str
    message_id: str
    content: str
    finish_reason: FinishReason
    usage: Usage
    client_tool_calls: tuple[ToolCallRequest, ...] = ()


TurnEvent = TurnStarted | ContentDelta | ToolActivity | TurnFinished


@dataclass(slots=True)
class TurnServices:
    sessions: async_sessionmaker[AsyncSession]
    provider: InferenceProvider
    tools: ToolRegistry
    audit: AuditRecorder
    hooks: TurnHooks = field(default_factory=TurnHooks)
    max_tool_rounds: int = 4
    default_max_tokens: int = 512


@dataclass(slots=True)
class _Turn:
    """The state one turn carries from step to step."""

    services: TurnServices
    request: TurnRequest
    interaction_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    conversation_id: str = ""
    prompt_message_ids: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    # Events noted but not yet recorded; the next ``audit`` or ``flush_audit`` records them
    # first, in order, in the same write.
    unrecorded: list[AuditEvent] = field(default_factory=list)

    async def audit(self, type_: str, outcome: str = "success", **data: Any) -> None:
        """Record an event (and any noted before it); returns once every sink kept it."""
        self.note(type_, outcome, **data)
        await self.flush_audit()

    def note(self, type_: str, outcome: str = "success", **data: Any) -> None:
        """An event whose record may wait for the next ``audit``: for steps with no effect
        outside the process between them and that next record (a model call, a tool run and
        the answer are each preceded by one), so they share one transaction per sink."""
        principal = self.request.principal
        if self.request.source_address:
            data.setdefault("source_address", self.request.source_address)
        self.unrecorded.append(
            AuditEvent(
                type=type_,
                tenant_id=principal.tenant_id,
                actor=actor_of(principal),
                outcome=outcome,  # type: ignore[arg-type]
                interaction_id=self.interaction_id,
                data={"conversation_id": self.conversation_id, **data},
            )
        )

    async def flush_audit(self) -> None:
        events, self.unrecorded = self.unrecorded, []
        await self.services.audit.record_many(events)


async def run_turn(services: TurnServices, request: TurnRequest) -> AsyncIterator[TurnEvent]:
    """Run one turn, yielding content as it streams and a final TurnFinished."""
    if not request.messages:
        raise InvalidInput("messages must not be empty")
    turn = _Turn(services, request)
    try:
        history = await _persist_prompt(turn)
    except DatabaseUnavailable as exc:
        # Lost with the commit's answer, the prompt may be stored all the same (a database
        # killed or frozen at that moment commits what it had received): mark it failed.
        if turn.prompt_message_ids:
            await _fail(turn, exc)
        raise
    try:
        await _audit_prompt(turn)
        await _check_input(turn)
        yield TurnStarted(turn.conversation_id, turn.interaction_id)
        redaction = services.hooks.redactor.redact(history)
        async for event in _model_and_tool_loop(turn, redaction):
            yield event
    except (InferenceError, ObsigenError, asyncio.CancelledError) as exc:
        await _fail(turn, exc)
        raise _public_error(exc) from exc
    except BaseException:
        # Anything else (a bug, the consumer closing the turn early): what was noted is
        # still recorded before the error goes on.
        if turn.unrecorded:
            await asyncio.shield(turn.flush_audit())
        raise


async def _persist_prompt(turn: _Turn) -> tuple[ChatMessage, ...]:
    request = turn.request
    await prepare_sealing(turn.services.sessions, request.principal.tenant_id)
    async with turn.services.sessions.begin() as session:
        conversation = await store.open_conversation(
            session, request.principal, request.conversation_id, request.model
        )
        rows = await store.append_messages(
            session, conversation, request.messages, turn.interaction_id
        )
        turn.conversation_id = conversation.id
        turn.prompt_message_ids = [row.id for row in rows]
        return await store.history(session, conversation)


async def _audit_prompt(turn: _Turn) -> None:
    # Apart from the insert: the prompt is stored by now, so a failure here fails the turn
    # the usual way (the prompt marked failed) instead of leaving it looking answered.
    prompt = _last_user_text(turn.request.messages)
    await turn.audit(
        "chat.prompt",
        model=turn.request.model,
        messages=len(turn.request.messages),
        content=prompt,
        content_digest=digest(prompt),
    )


def _last_user_text(messages: tuple[ChatMessage, ...]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content:
            return message.content
    return ""


async def _check_input(turn: _Turn) -> None:
    text = _last_user_text(turn.request.messages)
    result = await turn.services.hooks.input_guard.check(
        text, source="user", tenant_id=turn.request.principal.tenant_id
    )
    # Recorded with model.request before the model call, or with chat.failed when it blocks.
    _note_verdict(turn, result, source="user")
    if result.verdict == "block":
        raise InputBlocked(f"blocked as {', '.join(result.categories) or 'unsafe'}")


async def _audit_verdict(turn: _Turn, result: GuardResult, *, source: str) -> None:
    _note_verdict(turn, result, source=source)
    await turn.flush_audit()


def _note_verdict(turn: _Turn, result: GuardResult, *, source: str) -> None:
    turn.note(
        "safeguard.verdict",
        outcome="denied" if result.verdict == "block" else "success",
        source=source,
        verdict=result.verdict,
        score=result.score,
        categories=list(result.categories),
        detector=result.detector,
        policy_version=result.policy_version,
    )


async def _model_and_tool_loop(turn: _Turn, redaction: Redaction) -> AsyncIterator[TurnEvent]:
    services, request = turn.services, turn.request
    canary = services.hooks.canary.plant(redaction.messages)
    messages = list(canary.messages)
    server_specs = services.tools.specs() if request.server_tools else ()
    offered = _merge_tools(server_specs, request.client_tools)
    server_names = server_specs_names(server_specs)
    output_filter = services.hooks.output_filter_factory(canary.token)
    restorer = redaction.restorer()
    content_parts: list[str] = []

    def held_back() -> str:
        return restorer.feed(output_filter.finish()) + restorer.finish()

    seen_calls: set[tuple[str, str]] = set()
    repeating = False
    for round_number in range(services.max_tool_rounds + 1):
        # A model that repeats a call it already made is looping: make it answer instead.
        last_round = round_number == services.max_tool_rounds or repeating
        tool_choice: ToolChoice = request.tool_choice
        if last_round or not offered:
            tool_choice = "none"
        elif round_number > 0 and tool_choice != "none":
            # A forced choice ("required" or a named tool) applies to the first call only:
            # after its result, the model decides, or it could never answer.
            tool_choice = "auto"
        completion_request = CompletionRequest(
            model=request.model,
            messages=tuple(messages),
            tools=offered if tool_choice != "none" else (),
            tool_choice=tool_choice,
            max_tokens=request.max_tokens or services.default_max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop,
            seed=request.seed,
        )
        await turn.audit(
            "model.request",
            provider=services.provider.name,
            region=services.provider.region,
            model=request.model,
            round=round_number,
            tools=[spec.name for spec in completion_request.tools],
        )
        started = time.perf_counter()
        round_text: list[str] = []
        calls: tuple[ToolCallRequest, ...] = ()
        finish: FinishReason = "stop"
        async for chunk in services.provider.stream(completion_request):
            if chunk.content_delta:
                round_text.append(chunk.content_delta)
                # Filters first: they must see placeholders, not the user's own data.
                shown = restorer.feed(output_filter.feed(chunk.content_delta))
                if shown:
                    content_parts.append(shown)
                    yield ContentDelta(shown)
            if chunk.tool_calls:
                calls = chunk.tool_calls
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                turn.usage = turn.usage + chunk.usage
        # Recorded with the next event: chat.response once the answer is stored, or the
        # policy decision before any tool runs.
        turn.note(
            "model.response",
            provider=services.provider.name,
            model=request.model,
            round=round_number,
            finish_reason=finish,
            tool_calls=[call.name for call in calls],
            duration_ms=int((time.perf_counter() - started) * 1000),
            content_digest=digest("".join(round_text)),
        )
        if not calls or last_round:
            # Calls in the last round (tools were withdrawn) are not run: the turn ends here.
            tail = held_back()
            if tail:
                content_parts.append(tail)
                yield ContentDelta(tail)
            yield await _finish(turn, "".join(content_parts), "stop" if calls else finish, ())
            return

        # Tools act for the user: they get the user's values, not the placeholders the model
        # saw (credentials stay redacted: the redactor never keeps them).
        calls = tuple(
            replace(c, arguments=_restored_arguments(redaction, c.arguments)) for c in calls
        )
        signatures = {(c.name, c.arguments) for c in calls}
        repeating = signatures <= seen_calls
        seen_calls |= signatures
        server_calls = [c for c in calls if c.name in server_names]
        client_calls = tuple(c for c in calls if c not in server_calls)
        assistant = ChatMessage("assistant", "".join(round_text) or None, tuple(server_calls))
        results = [await _run_server_tool(turn, call) for call in server_calls]
        tool_messages = [result.message for result in results]
        message_ids = await _persist_tool_round(turn, assistant, tool_messages)
        for result, message_id in zip(results, message_ids, strict=True):
            yield await _park_if_approval_needed(turn, result, message_id)
        messages.extend(redaction.redact_more(m) for m in (assistant, *tool_messages))
        if client_calls:
            client_calls = await _policy_for_client_calls(turn, client_calls)
            tail = held_back()
            if tail:
                content_parts.append(tail)
                yield ContentDelta(tail)
            yield await _finish(turn, "".join(content_parts), "tool_calls", client_calls)
            return


def _restored(redaction: Redaction, text: str) -> str:
    restorer = redaction.restorer()
    return restorer.feed(text) + restorer.finish()


def _restored_arguments(redaction: Redaction, arguments: str) -> str:
    # Restore inside the parsed JSON: upstreams may send placeholders as \u escapes.
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return _restored(redaction, arguments)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _restored(redaction, value)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    restored = walk(parsed)
    return arguments if restored == parsed else json.dumps(restored, ensure_ascii=False)


def server_specs_names(specs: tuple[ToolSpec, ...]) -> frozenset[str]:
    return frozenset(spec.name for spec in specs)


def _merge_tools(
    server: tuple[ToolSpec, ...], client: tuple[ToolSpec, ...]
) -> tuple[ToolSpec, ...]:
    clash = server_specs_names(server) & {spec.name for spec in client}
    if clash:
        raise InvalidInput(f"tool names reserved by the server: {sorted(clash)}")
    return server + client


async def _run_server_tool(turn: _Turn, call: ToolCallRequest) -> _ServerToolResult:
    services, principal = turn.services, turn.request.principal
    tool = services.tools.get(call.name)
    assert tool is not None  # only names from the registry reach here
    arguments = store.arguments_of(call)
    started = time.perf_counter()
    decision = await services.hooks.tool_policy.decide(
        principal, call.name, arguments or {}, server_side=True
    )
    await turn.audit(
        "policy.decision",
        outcome="success" if decision.decision == "allow" else "denied",
        tool=call.name,
        decision=decision.decision,
        rule=decision.rule,
        reason=decision.reason,
        policy_version=decision.version,
    )
    status = "ok"
    if decision.decision == "approval":
        outcome = ToolOutcome(approvals.PENDING_TEXT, "pending_approval")
    elif decision.decision == "deny":
        outcome = ToolOutcome("error: the tool call was denied by policy", "denied")
    elif arguments is None:
        outcome = ToolOutcome("error: arguments must be a JSON object", "error")
    else:
        context = ToolContext(principal, turn.conversation_id, turn.interaction_id)
        outcome = await tool_execution.execute(tool, arguments, context)
    outcome = await tool_execution.screen(
        services.hooks.tool_output_guard, outcome, call.name, principal.tenant_id
    )
    assert outcome.scan is not None
    # Every verdict is audited, also in warn and log-only modes where it does not block.
    await _audit_verdict(turn, outcome.scan, source=f"tool:{call.name}")
    status, output = outcome.status, outcome.output
    duration_ms = int((time.perf_counter() - started) * 1000)
    row = ToolCall(
        tenant_id=principal.tenant_id,
        conversation_id=turn.conversation_id,
        interaction_id=turn.interaction_id,
        call_id=call.id,
        name=call.name,
        arguments=call.arguments,
        executed_by="server",
        decision=decision.decision,
        status=status,
        result=output,
        duration_ms=duration_ms,
    )
    async with services.sessions.begin() as session:
        await store.record_tool_call(session, row)
    await turn.audit(
        "tool.call",
        outcome="success" if status == "ok" else "failure",
        tool=call.name,
        call_id=call.id,
        executed_by="server",
        arguments_digest=digest(call.arguments),
        decision=decision.decision,
        status=status,
        duration_ms=duration_ms,
        result_digest=digest(output),
    )
    message = ChatMessage("tool", output, tool_call_id=call.id)
    activity = ToolActivity(call.id, call.name, decision.decision, status)
    return _ServerToolResult(call, message, activity, row.id, decision)


async def _park_if_approval_needed(
    turn: _Turn, result: _ServerToolResult, tool_message_id: str
) -> ToolActivity:
    if result.activity.status != "pending_approval":
        return result.activity
    call = result.call
    async with turn.services.sessions.begin() as session:
        approval = await approvals.park(
            session,
            turn.request.principal,
            conversation_id=turn.conversation_id,
            interaction_id=turn.interaction_id,
            tool_call_row_id=result.tool_call_row_id,
            tool_message_id=tool_message_id,
            call=call,
            decision=result.decision,
        )
    await turn.audit(
        "approval.requested",
        tool=call.name,
        call_id=call.id,
        approval_id=approval.id,
        policy_version=result.decision.version,
        rule=result.decision.rule,
        expires_at=approval.expires_at.isoformat(),
    )
    return replace(result.activity, approval_id=approval.id)


async def _policy_for_client_calls(
    turn: _Turn, calls: tuple[ToolCallRequest, ...]
) -> tuple[ToolCallRequest, ...]:
    """Client tools run in the client, but the decision to hand a call out is ours to audit."""
    allowed = []
    for call in calls:
        decision = await turn.services.hooks.tool_policy.decide(
            turn.request.principal, call.name, store.arguments_of(call) or {}, server_side=False
        )
        await turn.audit(
            "policy.decision",
            outcome="success" if decision.decision == "allow" else "denied",
            tool=call.name,
            decision=decision.decision,
            rule=decision.rule,
        )
        row = ToolCall(
            tenant_id=turn.request.principal.tenant_id,
            conversation_id=turn.conversation_id,
            interaction_id=turn.interaction_id,
            call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            executed_by="client",
            decision=decision.decision,
            status="returned" if decision.decision == "allow" else "denied",
        )
        async with turn.services.sessions.begin() as session:
            await store.record_tool_call(session, row)
        await turn.audit(
            "tool.call",
            tool=call.name,
            call_id=call.id,
            executed_by="client",
            arguments_digest=digest(call.arguments),
            decision=decision.decision,
            status=row.status,
        )
        if decision.decision == "allow":
            allowed.append(call)
    return tuple(allowed)


async def _persist_tool_round(
    turn: _Turn, assistant: ChatMessage, tool_messages: list[ChatMessage]
) -> list[str]:
    """Store the model's calls and their results; returns the ids of the tool messages."""
    if not assistant.tool_calls:
        return []
    async with turn.services.sessions.begin() as session:
        conversation = await store.open_conversation(
            session, turn.request.principal, turn.conversation_id, turn.request.model
        )
        rows = await store.append_messages(
            session, conversation, (assistant, *tool_messages), turn.interaction_id
        )
    return [row.id for row in rows[1:]]


async def _finish(
    turn: _Turn,
    content: str,
    finish_reason: FinishReason,
    client_calls: tuple[ToolCallRequest, ...],
) -> TurnFinished:
    answer = ChatMessage("assistant", content, client_calls)
    async with turn.services.sessions.begin() as session:
        conversation = await store.open_conversation(
            session, turn.request.principal, turn.conversation_id, turn.request.model
        )
        (row,) = await store.append_messages(
            session,
            conversation,
            (answer,),
            turn.interaction_id,
            tokens=(turn.usage.prompt_tokens, turn.usage.completion_tokens),
        )
    await turn.audit(
        "chat.response",
        message_id=row.id,
        finish_reason=finish_reason,
        prompt_tokens=turn.usage.prompt_tokens,
        completion_tokens=turn.usage.completion_tokens,
        content=content,
        content_digest=digest(content),
    )
    return TurnFinished(
        conversation_id=turn.conversation_id,
        interaction_id=turn.interaction_id,
        message_id=row.id,
        content=content,
        finish_reason=finish_reason,
        usage=turn.usage,
        client_tool_calls=client_calls,
    )


async def _fail(turn: _Turn, exc: BaseException) -> None:
    reason = _reason(exc)
    # Shielded: a client that hangs up must not stop us recording why its turn failed.
    try:
        await asyncio.shield(_record_failure(turn, reason))
    except DatabaseUnavailable:
        # The outage that failed the turn also refuses its record: written once it is back.
        retry_when_back(
            lambda: _record_failure(turn, reason), f"failure of turn {turn.interaction_id}"
        )


async def _record_failure(turn: _Turn, reason: str) -> None:
    async with turn.services.sessions.begin() as session:
        await store.mark_failed(session, turn.prompt_message_ids, reason)
    await turn.audit("chat.failed", outcome="failure", reason=reason)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InferenceError):
        return exc.reason
    if isinstance(exc, ObsigenError):
        return exc.detail
    return "cancelled: the client went away"


def _public_error(exc: BaseException) -> BaseException:
    if isinstance(exc, InferenceTimeout):
        return UpstreamTimeout(exc.reason)
    if isinstance(exc, InferenceError):
        return UpstreamFailed(exc.reason)
    return exc


__all__ = [
    "ContentDelta",
    "InputBlocked",
    "ToolActivity",
    "TurnEvent",
    "TurnFinished",
    "TurnRequest",
    "TurnServices",
    "TurnStarted",
    "run_turn",
]
