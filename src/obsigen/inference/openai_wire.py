"""The OpenAI chat-completions wire format: encode requests, decode answers and stream events.

No I/O here, so every shape an upstream may send is testable without a network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from obsigen.inference.errors import InferenceBadResponse, InferenceUnavailable
from obsigen.inference.interfaces import (
    ChatMessage,
    Completion,
    CompletionChunk,
    CompletionRequest,
    FinishReason,
    ToolCallRequest,
    Usage,
)

_FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "tool_calls", "content_filter"})


def encode_request(
    request: CompletionRequest, *, model: str, max_tokens: int, stream: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model or model,
        "messages": [_encode_message(m) for m in request.messages],
        "max_tokens": request.max_tokens or max_tokens,
        "stream": stream,
    }
    if stream:
        # Servers that do not know the option ignore it; usage is then simply absent.
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
        body["tool_choice"] = encode_tool_choice(request.tool_choice)
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": list(request.stop) or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def encode_tool_choice(choice: str) -> str | dict[str, Any]:
    if choice in {"auto", "none", "required"}:
        return choice
    return {"type": "function", "function": {"name": choice}}


def _encode_message(message: ChatMessage) -> dict[str, Any]:
    encoded: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        encoded["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    elif message.content is None:
        # Only an assistant turn carrying tool calls may omit content; others get "".
        encoded["content"] = ""
    if message.tool_call_id is not None:
        encoded["tool_call_id"] = message.tool_call_id
    return encoded


def decode_json(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InferenceBadResponse("upstream answered with invalid JSON") from None
    if not isinstance(value, dict):
        raise InferenceBadResponse("upstream answered with JSON that is not an object")
    return cast("dict[str, Any]", value)


def decode_completion(body: dict[str, Any], *, model: str) -> Completion:
    choice = _first_choice(body)
    if choice is None:
        raise InferenceBadResponse("upstream completion has no choices")
    message = _as_dict(choice.get("message"), "choices[0].message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise InferenceBadResponse("upstream completion content is not a string")
    calls = tuple(
        _decode_tool_call(c, i) for i, c in enumerate(_as_list(message.get("tool_calls")))
    )
    return Completion(
        model=_str_or(body.get("model"), model),
        content=content or "",
        tool_calls=calls,
        finish_reason=_finish_reason(choice.get("finish_reason"), has_calls=bool(calls)),
        usage=decode_usage(body.get("usage")) or Usage(),
    )


def decode_usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens", 0), raw.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        raise InferenceBadResponse("upstream usage counts are not integers")
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


def _decode_tool_call(raw: object, index: int) -> ToolCallRequest:
    call = _as_dict(raw, f"tool_calls[{index}]")
    function = _as_dict(call.get("function"), f"tool_calls[{index}].function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InferenceBadResponse("upstream tool call has no function name")
    return ToolCallRequest(
        id=_str_or(call.get("id"), f"call_{index}"),
        name=name,
        arguments=_arguments_text(function.get("arguments")),
    )


def _arguments_text(raw: object) -> str:
    # Some servers send the arguments as an object instead of JSON text.
    if raw is None:
        return "{}"
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        return json.dumps(raw)
    raise InferenceBadResponse("upstream tool call arguments are neither text nor an object")


def _finish_reason(raw: object, *, has_calls: bool) -> FinishReason:
    if raw == "length":
        return "length"  # a cut-off tool call must not be run as if it were whole
    if has_calls:
        return "tool_calls"
    if isinstance(raw, str) and raw in _FINISH_REASONS:
        return cast("FinishReason", raw)
    # Legacy ("function_call") or missing reasons: the upstream stopped of its own accord.
    return "stop"


def _first_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choices = _as_list(body.get("choices"))
    return _as_dict(choices[0], "choices[0]") if choices else None


def _as_dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InferenceBadResponse(f"upstream {where} is not an object")
    return cast("dict[str, Any]", value)


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InferenceBadResponse("upstream sent a non-list where a list was expected")
    return value


def _str_or(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


class SSEDecoder:
    """Incremental server-sent-events parser: feed lines, get each event's data when it ends."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            return self.flush()
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        # Comments (":"), "event:", "id:" and "retry:" lines carry nothing we use.
        return None

    def flush(self) -> str | None:
        """End the current event (a blank line, or the end of the body)."""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StreamAssembler:
    """Turns decoded stream events into chunks; tool-call deltas are joined by index."""

    model: str
    _calls: dict[int, _PartialCall] = field(default_factory=dict)
    _finish: str | None = None
    _usage: Usage | None = None
    _events: int = 0

    def feed(self, event: dict[str, Any]) -> CompletionChunk | None:
        """Absorb one event; return a content chunk when it carried text."""
        if "error" in event:
            raise InferenceUnavailable(f"upstream failed mid-stream: {_error_text(event)[:300]}")
        self._events += 1
        self._usage = decode_usage(event.get("usage")) or self._usage
        choice = _first_choice(event)
        if choice is None:
            return None  # the usage-only event sent for stream_options.include_usage
        if isinstance(choice.get("finish_reason"), str):
            self._finish = choice["finish_reason"]
        delta = choice.get("delta")
        if delta is None:
            return None
        delta = _as_dict(delta, "choices[0].delta")
        for index, raw in enumerate(_as_list(delta.get("tool_calls"))):
            self._absorb_call(_as_dict(raw, "delta.tool_calls[]"), index)
        text = delta.get("content")
        if text is None or text == "":
            return None
        if not isinstance(text, str):
            raise InferenceBadResponse("upstream stream content is not a string")
        return CompletionChunk(content_delta=text)

    def finish(self, *, done_seen: bool) -> CompletionChunk:
        if self._events == 0:
            raise InferenceBadResponse("upstream sent an empty stream")
        if self._finish is None and not done_seen:
            raise InferenceBadResponse("upstream stream ended before the completion finished")
        calls = tuple(
            ToolCallRequest(
                id=part.id or f"call_{index}",
                name=part.name,
                arguments="".join(part.arguments) or "{}",
            )
            for index, part in sorted(self._calls.items())
        )
        if any(not call.name for call in calls):
            raise InferenceBadResponse("upstream streamed a tool call without a function name")
        return CompletionChunk(
            tool_calls=calls,
            finish_reason=_finish_reason(self._finish, has_calls=bool(calls)),
            usage=self._usage,
        )

    def _absorb_call(self, raw: dict[str, Any], position: int) -> None:
        index = raw.get("index", position)
        if not isinstance(index, int):
            raise InferenceBadResponse("upstream tool-call delta has a non-integer index")
        part = self._calls.setdefault(index, _PartialCall())
        if isinstance(raw.get("id"), str) and raw["id"]:
            part.id = raw["id"]
        function = raw.get("function")
        if function is None:
            return
        function = _as_dict(function, "delta.tool_calls[].function")
        if isinstance(function.get("name"), str):
            # Servers send the name whole in the first delta; a few repeat it later.
            part.name = part.name if part.name == function["name"] else part.name + function["name"]
        arguments = function.get("arguments")
        if arguments is not None:
            part.arguments.append(_arguments_text(arguments))


def error_message(body: bytes, limit: int = 300) -> str:
    """The upstream's own error text, truncated: useful to a user, bounded for the logs."""
    try:
        parsed: object = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    text = _error_text(parsed) if isinstance(parsed, dict) else ""
    if not text:
        text = body.decode("utf-8", errors="replace").strip()
    return text[:limit]


def _error_text(body: dict[str, Any]) -> str:
    error = body.get("error", body)
    if isinstance(error, dict):
        for key in ("message", "detail", "msg"):
            if isinstance(error.get(key), str):
                return cast("str", error[key])
        return json.dumps(error)[:300]
    if isinstance(error, str):
        return error
    detail = body.get("detail")
    return detail if isinstance(detail, str) else json.dumps(body)[:300]
