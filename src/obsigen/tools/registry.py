"""The server-side tools the assistant may call, by name."""

from __future__ import annotations

from collections.abc import Iterable

from obsigen.artifacts.store import ArtifactStore
from obsigen.inference.interfaces import ToolSpec
from obsigen.sandbox.interfaces import SandboxRunner
from obsigen.tools.artifact_tools import artifact_tools
from obsigen.tools.calculator import CalculatorTool
from obsigen.tools.interfaces import Tool
from obsigen.tools.run_python import RunPythonTool


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools = {tool.spec.name: tool for tool in tools}

    def register(self, tool: Tool) -> None:
        if tool.spec.name in self._tools:
            raise ValueError(f"tool {tool.spec.name!r} is registered already")
        self._tools[tool.spec.name] = tool

    def replace(self, tool: Tool) -> None:
        """Put ``tool`` in place of the one of its name (a deployment's own implementation)."""
        self._tools[tool.spec.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(tool.spec for tool in self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def default_registry(
    sandbox: SandboxRunner | None = None, artifacts: ArtifactStore | None = None
) -> ToolRegistry:
    """The server's tools: ``run_python`` only where a sandbox backend runs; the slide and
    chart makers where artifacts can be stored (``run_python`` then keeps ``/output`` files)."""
    tools: list[Tool] = [CalculatorTool()]
    if sandbox is not None:
        tools.append(RunPythonTool(sandbox, artifacts))
    if artifacts is not None:
        tools.extend(artifact_tools(artifacts))
    return ToolRegistry(tools)
