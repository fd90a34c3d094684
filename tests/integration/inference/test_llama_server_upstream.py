"""OpenAIHTTPProvider against a real upstream: llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from obsigen.inference.interfaces import ChatMessage, CompletionRequest, ToolSpec
from obsigen.inference.openai_http import OpenAIHTTPProvider

pytestmark = pytest.mark.llama

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression and return the number.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)


def ask(text: str, *, max_tokens: int = 48, tool_choice: str = "") -> CompletionRequest:
    return CompletionRequest(
        model="smollm2",
        messages=(ChatMessage(role="user", content=text),),
        tools=(CALCULATOR,) if tool_choice else (),
        tool_choice=tool_choice or "auto",
        max_tokens=max_tokens,
        temperature=0.0,
        seed=7,
    )


# The server's GGUF template does not show the tools to the model, so SmolLM2 writes prose
# into the (grammar-valid) arguments; this prompt ends its call well inside max_tokens.
TOOL_PROMPT = "Compute 2+2 with the calculator."


@pytest.fixture
async def provider(llama_server_url: str) -> AsyncIterator[OpenAIHTTPProvider]:
    upstream = OpenAIHTTPProvider(base_url=llama_server_url, region="de", timeout_s=60.0)
    try:
        yield upstream
    finally:
        await upstream.aclose()


def assert_valid_calculator_arguments(arguments: str) -> None:
    parsed = json.loads(arguments)
    assert isinstance(parsed, dict)
    assert isinstance(parsed["expression"], str)


async def test_ready_and_models(provider: OpenAIHTTPProvider) -> None:
    assert await provider.ready()
    assert await provider.list_models()


async def test_non_streamed_answer(provider: OpenAIHTTPProvider) -> None:
    completion = await provider.complete(ask("What is the capital of France?"))
    assert completion.content.strip()
    assert completion.finish_reason in {"stop", "length"}
    assert completion.usage.completion_tokens > 0


async def test_streamed_answer(provider: OpenAIHTTPProvider) -> None:
    chunks = [c async for c in provider.stream(ask("Write one sentence about the sea."))]
    pieces = [c.content_delta for c in chunks if c.content_delta]
    assert len(pieces) > 2
    assert "".join(pieces).strip()
    assert chunks[-1].finish_reason in {"stop", "length"}


async def test_named_tool_call_has_valid_arguments(provider: OpenAIHTTPProvider) -> None:
    completion = await provider.complete(ask(TOOL_PROMPT, max_tokens=256, tool_choice="calculator"))
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls[0].name == "calculator"
    assert_valid_calculator_arguments(completion.tool_calls[0].arguments)


async def test_streamed_named_tool_call_is_assembled(provider: OpenAIHTTPProvider) -> None:
    chunks = [
        c async for c in provider.stream(ask(TOOL_PROMPT, max_tokens=256, tool_choice="calculator"))
    ]
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls[0].name == "calculator"
    assert_valid_calculator_arguments(final.tool_calls[0].arguments)
