"""Tool-call prompting and parsing for the local model, without the model."""

from __future__ import annotations

import json

import pytest

from obsigen.inference.errors import InferenceRejected
from obsigen.inference.interfaces import ChatMessage, ToolCallRequest, ToolSpec
from obsigen.inference.llama_tools import (
    GRAMMAR_MAX_STRING,
    bounded_schema,
    chosen_tools,
    decision_schema,
    parse_decision,
    render_messages,
)

CALC = ToolSpec(
    "calculator",
    "Evaluate arithmetic.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)
CLOCK = ToolSpec("clock", "Current time.", {"type": "object", "properties": {}})


def test_choice_selects_tools() -> None:
    assert chosen_tools((CALC, CLOCK), "auto") == (CALC, CLOCK)
    assert chosen_tools((CALC, CLOCK), "none") == ()
    assert chosen_tools((CALC, CLOCK), "clock") == (CLOCK,)
    with pytest.raises(InferenceRejected):
        chosen_tools((CALC,), "missing")


def test_schema_has_an_answer_branch_only_when_allowed() -> None:
    auto = decision_schema((CALC, CLOCK), allow_answer=True)["anyOf"]
    assert [b["properties"]["tool"]["const"] for b in auto] == ["calculator", "clock", "none"]
    required = decision_schema((CALC,), allow_answer=False)["anyOf"]
    assert [b["properties"]["tool"]["const"] for b in required] == ["calculator"]


def test_bounds_are_added_to_a_copy() -> None:
    bounded = bounded_schema(CALC.parameters)
    assert bounded["properties"]["expression"]["maxLength"] == GRAMMAR_MAX_STRING
    assert "maxLength" not in CALC.parameters["properties"]["expression"]


def test_parse_decision() -> None:
    call = parse_decision('{"tool": "calculator", "arguments": {"expression": "1+1"}}', (CALC,))
    assert call is not None
    assert call.call is not None
    assert call.call.name == "calculator"
    assert json.loads(call.call.arguments) == {"expression": "1+1"}
    assert call.call.id.startswith("call_")
    answer = parse_decision('{"tool": "none", "answer": "hi"}', (CALC,))
    assert answer is not None
    assert answer.call is None
    assert answer.answer == "hi"
    assert parse_decision('{"tool": "calculator", "argum', (CALC,)) is None
    assert parse_decision('{"tool": "other", "arguments": {}}', (CALC,)) is None


def test_history_renders_as_roles_the_template_knows() -> None:
    call = ToolCallRequest("call_1", "calculator", '{"expression": "1+1"}')
    rendered = render_messages(
        (
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "1+1?"),
            ChatMessage("assistant", None, tool_calls=(call,)),
            ChatMessage("tool", "2", tool_call_id="call_1"),
        ),
        preamble="TOOLS",
    )
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert rendered[0]["content"] == "Be brief.\n\nTOOLS"
    assert rendered[2]["content"] == 'I will use the calculator tool: {"expression": "1+1"}'
    assert rendered[3]["content"].startswith("The calculator tool returned: 2\n")


def test_large_bounds_are_lowered_so_the_grammar_cannot_overflow_the_stack() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 5000, "maxLength": 1_000_000},
            "items": {"type": "array", "minItems": 100, "maxItems": 10_000, "items": {}},
        },
    }

    bounded = bounded_schema(schema)

    code, items = bounded["properties"]["code"], bounded["properties"]["items"]
    assert code["maxLength"] <= 400
    assert code["minLength"] <= code["maxLength"]
    assert items["maxItems"] <= 32
    assert items["minItems"] <= items["maxItems"]
