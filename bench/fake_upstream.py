"""A minimal OpenAI-compatible upstream for the latency benchmarks.

It answers every chat completion at once with the same short answer, so whatever latency a
proxy shows on top of it is the proxy's own. A bare ASGI callable (no framework routing, no
validation, pre-encoded bodies) keeps the upstream's share of each request as small as Python
allows.

Run: ``python -m bench.fake_upstream --port 9100``
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL = "fake-model"
ANSWER_WORDS = ("Hello", " from", " the", " fake", " upstream", ".")
ANSWER = "".join(ANSWER_WORDS)
PROMPT_TOKENS = 9
COMPLETION_TOKENS = len(ANSWER_WORDS)
USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()


def _chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _stream_events(include_usage: bool) -> list[bytes]:
    """The SSE events of one streamed answer, in the order OpenAI sends them."""
    events = [_sse(_chunk({"role": "assistant", "content": ""}, None))]
    events += [_sse(_chunk({"content": word}, None)) for word in ANSWER_WORDS]
    events.append(_sse(_chunk({}, "stop")))
    if include_usage:
        usage_chunk = _chunk({}, None)
        usage_chunk["choices"] = []
        usage_chunk["usage"] = USAGE
        events.append(_sse(usage_chunk))
    events.append(b"data: [DONE]\n\n")
    return events


MODELS_BODY = json.dumps(
    {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}],
    }
).encode()
# Built once: the answer never changes, and encoding per request would be upstream cost.
COMPLETION_BODY = _completion_body()
STREAM_WITH_USAGE = _stream_events(include_usage=True)
STREAM_WITHOUT_USAGE = _stream_events(include_usage=False)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body", False):
            return body


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, events: list[bytes]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _chat(receive: Receive, send: Send) -> None:
    try:
        request = json.loads(await _read_body(receive) or b"{}")
    except ValueError:
        await _respond(send, 400, b'{"error": {"message": "invalid JSON"}}')
        return
    if not request.get("stream"):
        await _respond(send, 200, COMPLETION_BODY)
        return
    options = request.get("stream_options") or {}
    include_usage = bool(options.get("include_usage"))
    await _stream(send, STREAM_WITH_USAGE if include_usage else STREAM_WITHOUT_USAGE)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"].rstrip("/")
    if scope["method"] == "POST" and path == "/v1/chat/completions":
        await _chat(receive, send)
    elif scope["method"] == "GET" and path == "/v1/models":
        await _respond(send, 200, MODELS_BODY)
    elif scope["method"] == "GET" and path in ("/health", "/healthz"):
        await _respond(send, 200, b'{"status": "ok"}')
    else:
        await _respond(send, 404, b'{"error": {"message": "not found"}}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
