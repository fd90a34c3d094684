"""Tool calling for a small local model that was never trained for it.

The model is shown the tools in a system preamble and must answer with one JSON object,
``{"tool": NAME, "arguments": {...}}`` or ``{"tool": "none", "answer": "..."}``. A grammar
built from :func:`decision_schema` constrains sampling, so the object is always well formed
and the arguments always match the tool's schema. No llama import here: all of this is
testable without the model.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from obsigen.inference.errors import InferenceRejected
from obsigen.inference.interfaces import ChatMessage, ToolCallRequest, ToolSpec

NO_TOOL = "none"
# Bounds added to the grammar (not to the tool's schema): a tiny model can repeat "0000..."
# forever; a bounded string lets the JSON close before max_tokens cuts it into invalid text.
GRAMMAR_MAX_STRING = 400
GRAMMAR_MAX_ITEMS = 32


def chosen_tools(tools: Sequence[ToolSpec], choice: str) -> tuple[ToolSpec, ...]:
    """The tools the model may call under ``choice`` ("none" gives none)."""
    if choice == "none":
        return ()
    if choice in {"auto", "required"}:
        return tuple(tools)
    named = tuple(t for t in tools if t.name == choice)
    if not named:
        raise InferenceRejected(f"tool_choice names {choice!r}, which is not among the tools")
    return named


def decision_schema(tools: Sequence[ToolSpec], *, allow_answer: bool) -> dict[str, Any]:
    if allow_answer and any(t.name == NO_TOOL for t in tools):
        raise InferenceRejected(f"a tool named {NO_TOOL!r} cannot be told apart from no tool")
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "tool": {"const": tool.name},
                "arguments": bounded_schema(tool.parameters),
            },
            "required": ["tool", "arguments"],
        }
        for tool in tools
    ]
    if allow_answer:
        branches.append(
            {
                "type": "object",
                "properties": {"tool": {"const": NO_TOOL}, "answer": {"type": "string"}},
                "required": ["tool", "answer"],
            }
        )
    return {"anyOf": branches}


def bounded_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` whose strings and arrays have an upper bound."""
    bounded = copy.deepcopy(schema)
    _bound(bounded)
    return bounded


def _bound(node: object) -> None:
    if isinstance(node, list):
        for item in node:
            _bound(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    # A pattern or format has its own grammar rule, which a length bound would replace.
    # Always the smaller bound: llama.cpp expands {n,m} into nested rules and recurses through
    # them, so a schema's own large maxLength (ours, or a client's) overflows the C stack.
    if "string" in kinds and not {"pattern", "format", "enum", "const"} & node.keys():
        node["maxLength"] = _at_most(node.get("maxLength"), GRAMMAR_MAX_STRING)
        if "minLength" in node:
            node["minLength"] = _at_most(node["minLength"], node["maxLength"])
    if "array" in kinds:
        node["maxItems"] = _at_most(node.get("maxItems"), GRAMMAR_MAX_ITEMS)
        if "minItems" in node:
            node["minItems"] = _at_most(node["minItems"], node["maxItems"])
    for value in node.values():
        _bound(value)


def _at_most(value: object, bound: int) -> int:
    return min(value, bound) if isinstance(value, int) and value >= 0 else bound


def tool_preamble(tools: Sequence[ToolSpec], *, allow_answer: bool) -> str:
    lines = ["You can use these tools:"]
    for tool in tools:
        described = f": {tool.description}" if tool.description else ""
        lines.append(f"- {tool.name}{described} Arguments: {json.dumps(tool.parameters)}")
    lines.append("")
    lines.append(
        'Reply with one JSON object. To use a tool: {"tool": "<tool name>", "arguments": {...}}.'
    )
    if allow_answer:
        lines.append(
            'If no tool is needed, answer directly: {"tool": "none", "answer": "<your answer>"}.'
        )
    return "\n".join(lines)


def render_messages(messages: Sequence[ChatMessage], *, preamble: str = "") -> list[dict[str, str]]:
    """Messages as the GGUF's ChatML template accepts them: string content, known roles only.

    SmolLM2 was trained on system/user/assistant turns only. Tried on SmolLM2-135M: a call
    written back as the JSON object makes the model repeat the call; written as a sentence,
    with the result in a user turn that asks for the answer, it answers from the result.
    """
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    rendered: list[dict[str, str]] = []
    for message in messages:
        if message.role == "tool":
            name = names.get(message.tool_call_id or "", "")
            tool = f"The {name} tool" if name else "The tool"
            content = (
                f"{tool} returned: {message.content or ''}\nUse this result to answer my question."
            )
            rendered.append({"role": "user", "content": content})
        elif message.role == "assistant" and message.tool_calls:
            calls = [f"I will use the {c.name} tool: {c.arguments}" for c in message.tool_calls]
            text = "\n".join([message.content, *calls] if message.content else calls)
            rendered.append({"role": "assistant", "content": text})
        else:
            rendered.append({"role": message.role, "content": message.content or ""})
    if preamble:
        if rendered and rendered[0]["role"] == "system":
            rendered[0] = {"role": "system", "content": f"{rendered[0]['content']}\n\n{preamble}"}
        else:
            rendered.insert(0, {"role": "system", "content": preamble})
    return rendered


@dataclass(frozen=True, slots=True)
class ToolDecision:
    call: ToolCallRequest | None  # None: the model chose to answer
    answer: str = ""


def parse_decision(text: str, tools: Sequence[ToolSpec]) -> ToolDecision | None:
    """The model's decision, or None when the text is not one (cut off by max_tokens)."""
    try:
        # The grammar's string rule lets raw newlines through; they are still the model's text.
        value: object = json.loads(text, strict=False)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    tool = value.get("tool")
    if tool == NO_TOOL and isinstance(value.get("answer"), str):
        return ToolDecision(call=None, answer=value["answer"])
    arguments = value.get("arguments")
    if tool not in {t.name for t in tools} or not isinstance(arguments, dict):
        return None
    call_id = f"call_{secrets.token_hex(12)}"
    return ToolDecision(
        ToolCallRequest(id=call_id, name=str(tool), arguments=json.dumps(arguments))
    )
