"""Running one server tool and screening what it returns: shared by the turn and approvals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from obsigen.assistant.hooks import ContentGuard, GuardResult
from obsigen.tools.interfaces import Tool, ToolContext, ToolInputError

TOOL_TIMEOUT_S = 30.0
TOOL_OUTPUT_CHARS = 16_000
WITHHELD = "error: the tool output was withheld by a content safeguard"


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    output: str
    status: str  # ok | error | blocked (or the caller's own: denied, pending_approval)
    scan: GuardResult | None = None


async def execute(tool: Tool, arguments: dict[str, Any], context: ToolContext) -> ToolOutcome:
    """Run the tool with a time limit; input errors go back to the model as text."""
    try:
        async with asyncio.timeout(TOOL_TIMEOUT_S):
            result = await tool.run(arguments, context)
    except ToolInputError as exc:
        return ToolOutcome(f"error: {exc}", "error")
    except TimeoutError:
        return ToolOutcome("error: the tool timed out", "error")
    return ToolOutcome(result.content[:TOOL_OUTPUT_CHARS], "ok")


async def screen(
    guard: ContentGuard, outcome: ToolOutcome, tool_name: str, tenant_id: str
) -> ToolOutcome:
    """The model reads tool output: check it for injected instructions first."""
    scan = await guard.check(outcome.output, source=f"tool:{tool_name}", tenant_id=tenant_id)
    if scan.verdict == "block":
        return ToolOutcome(WITHHELD, "blocked", scan)
    return ToolOutcome(outcome.output, outcome.status, scan)
