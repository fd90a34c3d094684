"""What a server-side tool is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from obsigen.authz.principal import Principal
from obsigen.inference.interfaces import ToolSpec

# How much harm a call can do; the tenant's tool policy maps it to allow/deny/approval.
Sensitivity = Literal["low", "medium", "high"]


class ToolInputError(ValueError):
    """The model called the tool with arguments it cannot run; the message goes back to it."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    principal: Principal
    conversation_id: str
    interaction_id: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: str
    # Ids of the artifacts the call made (slides, charts, files), for the caller to link.
    artifacts: tuple[str, ...] = ()


class Tool(Protocol):
    @property
    def spec(self) -> ToolSpec: ...

    @property
    def sensitivity(self) -> Sensitivity: ...

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult: ...
