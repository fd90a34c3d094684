"""The OpenAI chat-completions wire format that we accept and answer with."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from obsigen.inference.interfaces import ChatMessage, ToolCallRequest, ToolSpec

MAX_MESSAGES = 500
MAX_CONTENT_CHARS = 200_000


class _Lenient(BaseModel):
    # OpenAI clients send fields we do not use (logprobs, user, metadata...): ignore them.
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str = Field(max_length=MAX_CONTENT_CHARS)


class FunctionCallIn(_Lenient):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(default="{}", max_length=MAX_CONTENT_CHARS)


class ToolCallIn(_Lenient):
    id: str = Field(min_length=1, max_length=64)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class MessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = Field(default=None, max_length=64)

    @field_validator("content")
    @classmethod
    def _bounded(cls, value: str | list[TextPart] | None) -> str | list[TextPart] | None:
        if isinstance(value, str) and len(value) > MAX_CONTENT_CHARS:
            raise ValueError(f"content longer than {MAX_CONTENT_CHARS} characters")
        return value

    def to_chat(self) -> ChatMessage:
        text = self.content
        if isinstance(text, list):
            text = "".join(part.text for part in text)
        calls = tuple(
            ToolCallRequest(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in self.tool_calls or ()
        )
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(
            role=role, content=text, tool_calls=calls, tool_call_id=self.tool_call_id
        )


MAX_SCHEMA_DEPTH = 12
MAX_SCHEMA_CHARS = 20_000


def _depth(node: object) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


class FunctionSpecIn(_Lenient):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(default="", max_length=4000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("parameters")
    @classmethod
    def _bounded_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Schemas become grammars and prompts: bound their size and nesting.
        if _depth(value) > MAX_SCHEMA_DEPTH:
            raise ValueError(f"parameters schema nested deeper than {MAX_SCHEMA_DEPTH}")
        if len(json.dumps(value)) > MAX_SCHEMA_CHARS:
            raise ValueError(f"parameters schema longer than {MAX_SCHEMA_CHARS} characters")
        return value


class ToolIn(_Lenient):
    type: Literal["function"]
    function: FunctionSpecIn

    def to_spec(self) -> ToolSpec:
        fn = self.function
        return ToolSpec(name=fn.name, description=fn.description, parameters=fn.parameters)


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionIn(_Lenient):
    model: str = Field(min_length=1, max_length=200)
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolIn] | None = Field(default=None, max_length=64)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    max_tokens: Annotated[int, Field(ge=1, le=32768)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=32768)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: Literal[1] = 1
    # Obsigen extensions (send with the OpenAI client's ``extra_body``).
    conversation_id: str | None = Field(default=None, max_length=32)
    server_tools: bool | None = None  # None: the deployment's [inference] server_tools

    @property
    def choice(self) -> str:
        if self.tool_choice is None:
            return "auto"
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop[:4])


def tool_calls_out(calls: tuple[ToolCallRequest, ...]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]
