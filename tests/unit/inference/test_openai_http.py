"""OpenAIHTTPProvider against a real HTTP server on a loopback socket."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from tests.fakes.openai_upstream import FakeToolCall, FakeUpstream, serve_in_thread

from obsigen.inference.errors import (
    InferenceBadResponse,
    InferenceRejected,
    InferenceTimeout,
    InferenceUnavailable,
)
from obsigen.inference.interfaces import (
    ChatMessage,
    CompletionChunk,
    CompletionRequest,
    InferenceProvider,
    ToolCallRequest,
    ToolSpec,
)
from obsigen.inference.openai_http import OpenAIHTTPProvider

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)


def ask(text: str = "Hello?", **kwargs: Any) -> CompletionRequest:
    return CompletionRequest(
        model="fake-model", messages=(ChatMessage(role="user", content=text),), **kwargs
    )


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def base_url(upstream: FakeUpstream) -> Iterator[str]:
    with serve_in_thread(upstream) as url:
        yield url


@asynccontextmanager
async def provider_at(url: str, **kwargs: Any) -> AsyncIterator[OpenAIHTTPProvider]:
    settings: dict[str, Any] = {"timeout_s": 5.0, "connect_timeout_s": 1.0, "region": "de"}
    provider = OpenAIHTTPProvider(base_url=url, **{**settings, **kwargs})
    try:
        yield provider
    finally:
        await provider.aclose()


async def collect(
    provider: OpenAIHTTPProvider, request: CompletionRequest
) -> list[CompletionChunk]:
    return [chunk async for chunk in provider.stream(request)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_is_an_inference_provider(base_url: str) -> None:
    async with provider_at(base_url) as provider:
        assert isinstance(provider, InferenceProvider)
        assert provider.name == "openai"
        assert provider.region == "de"


async def test_complete_returns_the_answer_and_usage(base_url: str, upstream: FakeUpstream) -> None:
    async with provider_at(base_url, max_tokens=77) as provider:
        completion = await provider.complete(ask(temperature=0.5, stop=("END",)))
    assert completion.content == upstream.answer
    assert completion.finish_reason == "stop"
    assert completion.model == "fake-model"
    assert completion.usage.prompt_tokens == upstream.prompt_tokens
    assert completion.usage.completion_tokens > 0
    body = upstream.chat_requests[0].body
    assert body is not None
    assert body["max_tokens"] == 77
    assert body["temperature"] == 0.5
    assert body["stop"] == ["END"]
    assert body["stream"] is False
    assert "tools" not in body
    assert body["messages"] == [{"role": "user", "content": "Hello?"}]


async def test_bearer_key_is_sent_only_when_set(base_url: str, upstream: FakeUpstream) -> None:
    async with provider_at(base_url) as provider:
        await provider.complete(ask())
    async with provider_at(base_url, api_key="sk-test-123") as provider:
        await provider.complete(ask())
    first, second = upstream.chat_requests
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == "Bearer sk-test-123"


async def test_rejected_key_is_not_echoed(base_url: str, upstream: FakeUpstream) -> None:
    upstream.required_api_key = "sk-right"
    async with provider_at(base_url, api_key="sk-wrong-secret") as provider:
        assert "sk-wrong-secret" not in repr(provider)
        with pytest.raises(InferenceRejected) as caught:
            await provider.complete(ask())
    assert "401" in caught.value.reason
    assert "Incorrect API key" in caught.value.reason
    assert "sk-wrong-secret" not in str(caught.value)


async def test_stream_yields_deltas_then_a_final_chunk(
    base_url: str, upstream: FakeUpstream
) -> None:
    async with provider_at(base_url) as provider:
        chunks = await collect(provider, ask())
    text = [c.content_delta for c in chunks if c.content_delta]
    assert len(text) > 3
    assert "".join(text) == upstream.answer
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.tool_calls == ()
    assert final.usage is not None
    assert final.usage.prompt_tokens == upstream.prompt_tokens
    assert all(c.finish_reason is None for c in chunks[:-1])
    body = upstream.chat_requests[0].body
    assert body is not None
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_streamed_answers_reuse_one_connection(base_url: str, upstream: FakeUpstream) -> None:
    # A response closed before its end takes its connection with it: every turn would pay
    # for a new one (a TLS handshake with a remote upstream).
    async with provider_at(base_url) as provider:
        for _ in range(3):
            chunks = await collect(provider, ask())
            assert chunks[-1].finish_reason == "stop"
    ports = {request.client_port for request in upstream.chat_requests}
    assert len(upstream.chat_requests) == 3
    assert len(ports) == 1


async def test_events_after_done_are_ignored(base_url: str, upstream: FakeUpstream) -> None:
    upstream.events_after_done = 50
    async with provider_at(base_url) as provider:
        for _ in range(2):
            chunks = await collect(provider, ask())
            text = "".join(c.content_delta for c in chunks if c.content_delta)
            assert text == upstream.answer
            assert chunks[-1].finish_reason == "stop"
    # Past the few events read after [DONE] the connection is given up, not reused.
    assert len({request.client_port for request in upstream.chat_requests}) == 2


async def test_a_body_left_open_after_done_does_not_hold_the_answer(
    base_url: str, upstream: FakeUpstream
) -> None:
    upstream.stall_after_done_s = 3.0
    async with provider_at(base_url, timeout_s=5.0) as provider:
        started = time.monotonic()
        chunks = await collect(provider, ask())
        assert time.monotonic() - started < 2.0
    assert "".join(c.content_delta for c in chunks if c.content_delta) == upstream.answer
    assert chunks[-1].finish_reason == "stop"


async def test_stream_without_usage_is_accepted(base_url: str, upstream: FakeUpstream) -> None:
    upstream.send_usage = False
    async with provider_at(base_url) as provider:
        chunks = await collect(provider, ask())
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is None


async def test_tool_call_deltas_are_assembled_by_index(
    base_url: str, upstream: FakeUpstream
) -> None:
    upstream.tool_calls = [
        FakeToolCall("calculator", {"expression": "12 * (7 + 1)"}, id="call_a"),
        FakeToolCall("calculator", {"expression": "2 ** 10"}, id="call_b"),
    ]
    async with provider_at(base_url) as provider:
        chunks = await collect(provider, ask("compute", tools=(CALCULATOR,)))
    assert all(c.tool_calls == () for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls == (
        ToolCallRequest("call_a", "calculator", json.dumps({"expression": "12 * (7 + 1)"})),
        ToolCallRequest("call_b", "calculator", json.dumps({"expression": "2 ** 10"})),
    )
    body = upstream.chat_requests[0].body
    assert body is not None
    assert body["tool_choice"] == "auto"
    assert body["tools"][0]["function"]["name"] == "calculator"


async def test_complete_with_tool_call_and_named_choice(
    base_url: str, upstream: FakeUpstream
) -> None:
    upstream.tool_calls = [FakeToolCall("calculator", {"expression": "1+1"}, id="call_x")]
    async with provider_at(base_url) as provider:
        completion = await provider.complete(
            ask("compute", tools=(CALCULATOR,), tool_choice="calculator")
        )
    assert completion.finish_reason == "tool_calls"
    assert completion.content == ""
    assert completion.tool_calls == (
        ToolCallRequest("call_x", "calculator", '{"expression": "1+1"}'),
    )
    body = upstream.chat_requests[0].body
    assert body is not None
    assert body["tool_choice"] == {"type": "function", "function": {"name": "calculator"}}


async def test_tool_history_is_sent_in_openai_shape(base_url: str, upstream: FakeUpstream) -> None:
    call = ToolCallRequest("call_1", "calculator", '{"expression": "1+1"}')
    request = CompletionRequest(
        model="",
        messages=(
            ChatMessage(role="user", content="1+1?"),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", content="2", tool_call_id="call_1"),
        ),
        tools=(CALCULATOR,),
    )
    async with provider_at(base_url, model="configured-model") as provider:
        await provider.complete(request)
    body = upstream.chat_requests[0].body
    assert body is not None
    assert body["model"] == "configured-model"
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
            }
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": "2", "tool_call_id": "call_1"}


@pytest.mark.parametrize("status", [503, 429, 502])
async def test_retries_transient_statuses_then_succeeds(
    base_url: str, upstream: FakeUpstream, status: int
) -> None:
    upstream.failures = [status, status]
    async with provider_at(base_url, max_retries=2) as provider:
        completion = await provider.complete(ask())
    assert completion.content == upstream.answer
    assert len(upstream.chat_requests) == 3


async def test_stream_retries_before_the_body_then_streams(
    base_url: str, upstream: FakeUpstream
) -> None:
    upstream.failures = [503]
    async with provider_at(base_url, max_retries=1) as provider:
        chunks = await collect(provider, ask())
    assert "".join(c.content_delta for c in chunks) == upstream.answer
    assert len(upstream.chat_requests) == 2


async def test_gives_up_after_max_retries(base_url: str, upstream: FakeUpstream) -> None:
    upstream.failures = [503, 503, 503, 503]
    async with provider_at(base_url, max_retries=2) as provider:
        with pytest.raises(InferenceUnavailable) as caught:
            await provider.complete(ask())
    assert caught.value.retryable
    assert "503" in caught.value.reason
    assert upstream.failure_message in caught.value.reason
    assert len(upstream.chat_requests) == 3


async def test_no_retry_on_400_and_message_is_truncated(
    base_url: str, upstream: FakeUpstream
) -> None:
    upstream.failures = [400]
    upstream.failure_message = "bad request: " + "x" * 1000
    async with provider_at(base_url, max_retries=3) as provider:
        with pytest.raises(InferenceRejected) as caught:
            await provider.complete(ask())
    assert "bad request: xxx" in caught.value.reason
    assert len(caught.value.reason) < 400
    assert not caught.value.retryable
    assert len(upstream.chat_requests) == 1


async def test_500_is_unavailable_and_not_retried(base_url: str, upstream: FakeUpstream) -> None:
    upstream.failures = [500]
    async with provider_at(base_url, max_retries=3) as provider:
        with pytest.raises(InferenceUnavailable):
            await provider.complete(ask())
    assert len(upstream.chat_requests) == 1


async def test_slow_upstream_times_out_without_retry(base_url: str, upstream: FakeUpstream) -> None:
    upstream.delay_s = 1.0
    async with provider_at(base_url, timeout_s=0.3, max_retries=2) as provider:
        with pytest.raises(InferenceTimeout):
            await provider.complete(ask())
        with pytest.raises(InferenceTimeout):
            await collect(provider, ask())
    assert len(upstream.chat_requests) == 2


async def test_stalled_stream_times_out(base_url: str, upstream: FakeUpstream) -> None:
    upstream.chunk_delay_s = 1.0
    async with provider_at(base_url, timeout_s=0.3) as provider:
        with pytest.raises(InferenceTimeout):
            await collect(provider, ask())


async def test_broken_stream_is_unavailable_and_not_retried(
    base_url: str, upstream: FakeUpstream
) -> None:
    upstream.break_stream_after = 2
    received: list[str] = []

    async def consume(provider: OpenAIHTTPProvider) -> None:
        async for chunk in provider.stream(ask()):
            received.append(chunk.content_delta)

    async with provider_at(base_url, max_retries=2) as provider:
        with pytest.raises(InferenceUnavailable):
            await consume(provider)
    assert "".join(received).strip()
    assert len(upstream.chat_requests) == 1


async def test_unreachable_endpoint_is_unavailable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with provider_at(url, max_retries=1) as provider:
        assert not await provider.ready()
        with pytest.raises(InferenceUnavailable):
            await provider.complete(ask())
        with pytest.raises(InferenceUnavailable):
            await collect(provider, ask())


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"choices": []}', '{"choices": [{}]}'])
async def test_malformed_answers_are_bad_responses(
    base_url: str, upstream: FakeUpstream, raw: str
) -> None:
    upstream.raw_body = raw
    async with provider_at(base_url) as provider:
        with pytest.raises(InferenceBadResponse):
            await provider.complete(ask())


async def test_json_answer_to_a_stream_request_is_replayed(
    base_url: str, upstream: FakeUpstream
) -> None:
    upstream.raw_body = json.dumps(
        {"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}
    )
    async with provider_at(base_url) as provider:
        chunks = await collect(provider, ask())
    assert [c.content_delta for c in chunks] == ["whole", ""]
    assert chunks[-1].finish_reason == "stop"


async def test_ready_and_list_models(base_url: str, upstream: FakeUpstream) -> None:
    upstream.models = ["m-one", "m-two"]
    async with provider_at(base_url) as provider:
        assert await provider.ready()
        assert await provider.list_models() == ["m-one", "m-two"]
