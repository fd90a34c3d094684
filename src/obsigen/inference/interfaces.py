"""What every inference provider offers: OpenAI-shaped chat completions, plain or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]
ToolChoice = Literal["auto", "none", "required"] | str  # a str other than those names a function


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True)
class Completion:
    model: str
    content: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class CompletionChunk:
    """A piece of a streamed completion.

    Content arrives as deltas. Tool calls arrive whole, once the provider has assembled them,
    in the final chunk together with ``finish_reason`` and ``usage``.
    """

    content_delta: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@runtime_checkable
class InferenceProvider(Protocol):
    name: str  # "local" | "openai"
    region: str  # where prompts are processed: ISO country code, or "local"

    async def list_models(self) -> list[str]: ...

    async def complete(self, request: CompletionRequest) -> Completion: ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]: ...

    async def ready(self) -> bool:
        """True when the provider can answer now (model loaded / upstream reachable)."""
        ...

    async def aclose(self) -> None: ...
