"""A fake OpenAI-compatible upstream on a real loopback socket, for tests and benchmarks.

    upstream = FakeUpstream(answer="Hi there", failures=[503])
    with serve_in_thread(upstream) as base_url:      # "http://127.0.0.1:PORT/v1"
        ...                                           # upstream.requests records what came in

Everything is plain attributes: change them between requests to change the behaviour.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeToolCall:
    name: str
    arguments: dict[str, Any] | str  # a str is sent verbatim (e.g. to send invalid JSON)
    id: str = ""

    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class FakeReply:
    answer: str = ""
    tool_calls: list[FakeToolCall] = field(default_factory=list)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    client_port: int | None = None  # which connection carried it


@dataclass
class FakeUpstream:
    answer: str = "Hello from the fake upstream, happy to help."
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    # Statuses answered, in order, before chat requests succeed, e.g. [503, 503].
    failures: list[int] = field(default_factory=list)
    failure_message: str = "upstream is overloaded"
    delay_s: float = 0.0  # before the response headers
    chunk_delay_s: float = 0.0  # between streamed events
    send_usage: bool = True  # honour stream_options.include_usage
    break_stream_after: int | None = None  # drop the connection after N content events
    raw_body: str | None = None  # answer chat requests with this text instead (status 200)
    required_api_key: str = ""  # when set, other keys get a 401 that echoes them
    prompt_tokens: int = 11
    events_after_done: int = 0  # junk events sent after [DONE]
    stall_after_done_s: float = 0.0  # the body stays open this long after [DONE]
    # Consumed one per chat request; each sets answer and tool_calls from then on.
    script: list[FakeReply] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    async def _models(self, request: Request) -> Response:
        self._record(request, None)
        denied = self._check_key(request)
        if denied is not None:
            return denied
        return JSONResponse(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )

    async def _chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self._record(request, body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        denied = self._check_key(request)
        if denied is not None:
            return denied
        if self.failures:
            status = self.failures.pop(0)
            return JSONResponse(
                {"error": {"message": self.failure_message, "type": "fake", "code": status}},
                status_code=status,
                headers={"Retry-After": "0"} if status in {429, 503} else None,
            )
        if self.script:
            step = self.script.pop(0)
            self.answer, self.tool_calls = step.answer, list(step.tool_calls)
        if self.raw_body is not None:
            return Response(self.raw_body, media_type="application/json")
        model = body.get("model") or self.models[0]
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._events(model, usage and self.send_usage), media_type="text/event-stream"
            )
        return JSONResponse(self._completion(model))

    def _check_key(self, request: Request) -> Response | None:
        if not self.required_api_key:
            return None
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if given == self.required_api_key:
            return None
        return JSONResponse(
            {"error": {"message": f"Incorrect API key provided: {given}", "type": "auth"}},
            status_code=401,
        )

    def _record(self, request: Request, body: dict[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        port = request.client.port if request.client else None
        self.requests.append(
            RecordedRequest(request.method, request.url.path, headers, body, client_port=port)
        )

    def _calls(self) -> list[FakeToolCall]:
        return [
            FakeToolCall(c.name, c.arguments, c.id or f"call_fake{i}")
            for i, c in enumerate(self.tool_calls)
        ]

    def _usage(self) -> dict[str, int]:
        completion = len(self.answer.split()) + len(self.tool_calls) * 8
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def _completion(self, model: str) -> dict[str, Any]:
        calls = self._calls()
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else self.answer}
        if calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_text()},
                }
                for c in calls
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if calls else "stop",
                }
            ],
            "usage": self._usage(),
        }

    async def _events(self, model: str, include_usage: bool) -> AsyncIterator[str]:
        def event(delta: dict[str, Any], finish: str | None = None) -> str:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(chunk)}\n\n"

        calls = self._calls()
        yield event({"role": "assistant", "content": ""})
        for sent, delta in enumerate(self._deltas(calls)):
            if self.break_stream_after is not None and sent >= self.break_stream_after:
                raise ConnectionAbortedError("fake upstream drops the stream on purpose")
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            yield event(delta)
        yield event({}, "tool_calls" if calls else "stop")
        if include_usage:
            usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model}
            yield f"data: {json.dumps({**usage, 'choices': [], 'usage': self._usage()})}\n\n"
        yield "data: [DONE]\n\n"
        for n in range(self.events_after_done):
            yield f"data: {json.dumps({'after_done': n})}\n\n"
        if self.stall_after_done_s:
            await asyncio.sleep(self.stall_after_done_s)

    def _deltas(self, calls: list[FakeToolCall]) -> Iterator[dict[str, Any]]:
        if not calls:
            for i, word in enumerate(self.answer.split(" ")):
                yield {"content": word if i == 0 else f" {word}"}
            return
        # Name first, then the arguments in pieces, interleaving calls like real servers may.
        for index, call in enumerate(calls):
            yield {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        pieces = [_thirds(c.arguments_text()) for c in calls]
        for part in range(3):
            for index, parts in enumerate(pieces):
                yield {"tool_calls": [{"index": index, "function": {"arguments": parts[part]}}]}


def _thirds(text: str) -> list[str]:
    step = max(1, len(text) // 3)
    return [text[:step], text[step : 2 * step], text[2 * step :]]


@contextmanager
def serve_in_thread(upstream: FakeUpstream | None = None) -> Iterator[str]:
    """Serve ``upstream`` on 127.0.0.1 (ephemeral port); yield its base URL ending in /v1."""
    upstream = upstream or FakeUpstream()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        upstream.app(),
        log_level="critical",
        lifespan="off",
        http="h11",
        ws="none",
        access_log=False,
        # A request the test left hanging (delay_s) must not hold up teardown.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
