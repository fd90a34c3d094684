"""The calculator: right answers, and nothing but arithmetic, with bounded work."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import pytest

from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal
from obsigen.tools.calculator import MAX_EXPRESSION_CHARS, CalculatorTool, evaluate
from obsigen.tools.interfaces import ToolContext, ToolInputError


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 4 - 3", 3),
        ("2 * 3 ** 2", 18),
        ("-2 ** 2", -4),
        ("2 ^ 10", 1024),
        ("2 ^ 3 ^ 2", 512),  # right-associative, as in mathematics
        ("2 ** -1", 0.5),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("(12.5 * 4) / 3", 12.5 * 4 / 3),
        ("+-+5", -5),
        ("1_000 * 3", 3000),
        ("0x10 + 1", 17),
        ("1e3 + 1", 1001.0),
        ("sqrt(16)", 4.0),
        ("abs(-3.5)", 3.5),
        ("round(2.675, 2)", round(2.675, 2)),
        ("round(1234, -2)", 1200),
        ("round(7.5)", 8),
        ("log(8, 2)", 3.0),
        ("log(e)", 1.0),
        ("log10(1000)", 3.0),
        ("exp(0)", 1.0),
        ("floor(-2.5)", -3),
        ("ceil(2.1)", 3),
        ("cos(0) + sin(0) + tan(0)", 1.0),
        ("pi", math.pi),
        ("2 * pi", 2 * math.pi),
        ("10 ** 300", 10**300),
    ],
)
def test_arithmetic(expression: str, expected: float) -> None:
    result = evaluate(expression)
    assert result == pytest.approx(expected)
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "(1).__class__",
        "(1).__class__.__bases__[0].__subclasses__()",
        "pi.real",
        "x",
        "x + 1",
        "abs",
        "sqrt",
        "print(1)",
        "eval('1')",
        "open('/etc/passwd')",
        "pi()",
        "sqrt(x=4)",
        "round(1.5, ndigits=1)",
        "sqrt(*[4])",
        "log(1, 2, 3)",
        "(lambda: 1)()",
        "lambda: 1",
        "[x for x in (1, 2)]",
        "sum(x for x in (1, 2))",
        "{1: 2}",
        "[1, 2]",
        "(1, 2)",
        "{1}",
        "'a'",
        "'a' * 3",
        "b'a'",
        "f'{1}'",
        "True + 1",
        "None",
        "1j",
        "~1",
        "1 << 2",
        "1 & 3",
        "1 < 2",
        "1 and 2",
        "not 1",
        "1 if 1 else 2",
        "(y := 1)",
        "...",
        "abs(-1)(2)",
        "",
        "1 +",
        "import os",
        "1; 2",
    ],
)
def test_refuses_everything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ToolInputError):
        evaluate(expression)


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    with pytest.raises(ToolInputError):
        call()
    return time.perf_counter() - started


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9",
        "9^9^9",
        "2**100000",
        "(-2)**1001",
        "10**301",
        "10**300 * 10**300",
        "1e300 * 1e300",
        "1e301",
        "exp(1000)",
        "2.0 ** 5000",
        "round(5, -10**7)",
        "round(5, 10**9)",
        "floor(1e300) * floor(1e300)",
    ],
)
def test_huge_numbers_are_refused_quickly(expression: str) -> None:
    assert _timed(lambda: evaluate(expression)) < 1.0


def test_expression_length_limit() -> None:
    at_limit = "+".join(["1"] * ((MAX_EXPRESSION_CHARS + 1) // 2))
    assert len(at_limit) <= MAX_EXPRESSION_CHARS
    assert evaluate(at_limit) == (MAX_EXPRESSION_CHARS + 1) // 2
    too_long = at_limit + "+1"
    assert len(too_long) > MAX_EXPRESSION_CHARS
    with pytest.raises(ToolInputError, match="longer than"):
        evaluate(too_long)
    with pytest.raises(ToolInputError, match="longer than"):
        evaluate(" " * (MAX_EXPRESSION_CHARS + 1))


def _nest(depth: int, opener: str, closer: str = "") -> str:
    return opener * depth + "1" + closer * depth


@pytest.mark.parametrize(
    "expression",
    [
        _nest(249, "(", ")"),
        _nest(99, "abs(", ")"),
        _nest(499, "-"),
        _nest(166, "-(", ")"),
        _nest(124, "1+(", ")"),
    ],
)
def test_deep_nesting_fails_cleanly(expression: str) -> None:
    assert len(expression) <= MAX_EXPRESSION_CHARS
    # Whatever the parser makes of it, the answer is a number or a ToolInputError, never a crash.
    try:
        result = evaluate(expression)
    except ToolInputError:
        return
    assert isinstance(result, int | float)


def _at_depth(depth: int, call: Callable[[], object]) -> object:
    return call() if depth == 0 else _at_depth(depth - 1, call)


def test_deep_nesting_from_a_deep_call_stack_is_a_tool_input_error() -> None:
    # The tool runs inside a web request, an event loop and a tool loop: the stack is not empty.
    # 499 nested unary minus signs are within the length limit and each costs a frame.
    depth = sys.getrecursionlimit() - 250
    with pytest.raises(ToolInputError, match="nested too deeply"):
        _at_depth(depth, lambda: evaluate(_nest(499, "-")))
    # The same expression is fine with room on the stack: the limit is the stack, not the input.
    assert evaluate(_nest(499, "-")) == -1


@pytest.mark.parametrize("expression", ["1/0", "1 // 0", "1 % 0", "0 ** -1", "1 / (2 - 2)"])
def test_division_by_zero(expression: str) -> None:
    with pytest.raises(ToolInputError, match="cannot compute"):
        evaluate(expression)


@pytest.mark.parametrize("expression", ["sqrt(-1)", "log(0)", "log(-1)", "log10(0)"])
def test_math_domain_errors(expression: str) -> None:
    with pytest.raises(ToolInputError, match="cannot compute"):
        evaluate(expression)


def test_tool_input_error_is_a_value_error() -> None:
    assert issubclass(ToolInputError, ValueError)


@pytest.fixture
def context() -> ToolContext:
    principal = Principal(tenant_id="t1", kind="user", id="u1", roles=frozenset({Role.MEMBER}))
    return ToolContext(principal=principal, conversation_id="c1", interaction_id="i1")


async def test_tool_run_returns_the_result_as_text(context: ToolContext) -> None:
    result = await CalculatorTool().run({"expression": "(12.5 * 4) / 2"}, context)
    assert result.content == "25.0"
    result = await CalculatorTool().run({"expression": "2^10"}, context)
    assert result.content == "1024"


@pytest.mark.parametrize("arguments", [{}, {"expression": 42}, {"expression": None},
                                       {"expression": ["1+1"]}, {"expr": "1+1"}])  # fmt: skip
async def test_tool_run_refuses_a_non_string_expression(
    context: ToolContext, arguments: dict[str, object]
) -> None:
    with pytest.raises(ToolInputError, match="must be a string"):
        await CalculatorTool().run(arguments, context)


async def test_tool_run_passes_refusals_through(context: ToolContext) -> None:
    with pytest.raises(ToolInputError):
        await CalculatorTool().run({"expression": "__import__('os')"}, context)


def test_tool_spec_matches_the_limits() -> None:
    spec = CalculatorTool.spec
    assert spec.name == "calculator"
    expression = spec.parameters["properties"]["expression"]
    assert expression["type"] == "string"
    assert expression["maxLength"] == MAX_EXPRESSION_CHARS
    assert spec.parameters["required"] == ["expression"]
    assert spec.parameters["additionalProperties"] is False
