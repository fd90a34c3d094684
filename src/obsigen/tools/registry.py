"""The server-side tools the assistant may call, by name."""

from __future__ import annotations

from collections.abc import Iterable

from obsigen.inference.interfaces import ToolSpec
from obsigen.tools.calculator import CalculatorTool
from obsigen.tools.interfaces import Tool


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools = {tool.spec.name: tool for tool in tools}

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(tool.spec for tool in self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def default_registry() -> ToolRegistry:
    return ToolRegistry([CalculatorTool()])
