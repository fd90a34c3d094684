"""A calculator tool: arithmetic on an AST allow-list, no ``eval``, bounded work."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from obsigen.inference.interfaces import ToolSpec
from obsigen.tools.interfaces import Sensitivity, ToolContext, ToolInputError, ToolResult

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _round(number: float, ndigits: int | None = None) -> float:
    # round(5, -10**9) would compute 10**(10**9): bound the digits like the exponent.
    if ndigits is not None and abs(ndigits) > MAX_EXPONENT:
        raise ToolInputError(f"round digits larger than {MAX_EXPONENT}")
    return round(number, ndigits)


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def evaluate(expression: str) -> float | int:
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolInputError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ToolInputError(f"not an arithmetic expression: {exc.msg}") from exc
    except (RecursionError, MemoryError) as exc:
        raise ToolInputError("expression nested too deeply") from exc
    try:
        return _check(_eval(tree.body))
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        raise ToolInputError(f"cannot compute: {exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise ToolInputError("expression nested too deeply") from exc


def _check(value: float | int) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolInputError("result is not a number")
    if abs(value) > MAX_MAGNITUDE:
        raise ToolInputError("result too large")
    return value


def _eval(node: ast.expr) -> float | int:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: float | int = node.value  # type: ignore[assignment]  # narrowed by the check above
        return _check(value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolInputError(f"exponent larger than {MAX_EXPONENT}")
        return _check(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and len(node.args) <= 2
    ):
        return _check(_FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args)))
    raise ToolInputError(f"unsupported element: {ast.dump(node)[:80]}")


class CalculatorTool:
    sensitivity: Sensitivity = "low"  # pure arithmetic: no data, no side effects
    spec = ToolSpec(
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly, e.g. '(12.5 * 4) / 3' or 'sqrt(2)'. "
            "Supports + - * / // % ** and sqrt, log, exp, sin, cos, tan, abs, round, pi, e."
        ),
        parameters={
            "type": "object",
            "properties": {
                "expression": {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION_CHARS}
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            raise ToolInputError("'expression' must be a string")
        return ToolResult(content=str(evaluate(expression)))
