"""The hook points of a turn that later controls fill, each with a pass-through default.

Input safeguards and tool-output scanning (content safeguards issue), redaction before
inference, tool policy, and output filters all plug in here without touching the turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from obsigen.authz.principal import Principal
from obsigen.inference.interfaces import ChatMessage

Verdict = Literal["allow", "block"]
Decision = Literal["allow", "deny", "approval"]


@dataclass(frozen=True, slots=True)
class GuardResult:
    verdict: Verdict
    score: float = 0.0
    categories: tuple[str, ...] = ()
    detector: str = "none"


ALLOW = GuardResult("allow")


class ContentGuard(Protocol):
    """Judges text the model is about to read: the user's prompt, or a tool's output."""

    async def check(self, text: str, *, source: str) -> GuardResult: ...


class AllowAll:
    async def check(self, text: str, *, source: str) -> GuardResult:
        return ALLOW


@dataclass(frozen=True, slots=True)
class Redaction:
    messages: tuple[ChatMessage, ...]
    restore: Callable[[str], str] = field(default=lambda text: text)
    replaced: int = 0


class Redactor(Protocol):
    """Replaces secrets and personal data by placeholders before anything leaves for inference."""

    def redact(self, messages: tuple[ChatMessage, ...]) -> Redaction: ...


class NoRedaction:
    def redact(self, messages: tuple[ChatMessage, ...]) -> Redaction:
        return Redaction(messages=messages)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    decision: Decision
    rule: str = "default"
    reason: str = ""


class ToolPolicy(Protocol):
    async def decide(
        self, principal: Principal, tool: str, arguments: dict[str, Any], *, server_side: bool
    ) -> PolicyDecision: ...


class AllowTools:
    async def decide(
        self, principal: Principal, tool: str, arguments: dict[str, Any], *, server_side: bool
    ) -> PolicyDecision:
        return PolicyDecision("allow", rule="default-allow")


class OutputFilter(Protocol):
    """Stateful per response: may hold back text across chunks (e.g. a secret split in two)."""

    def feed(self, delta: str) -> str: ...

    def finish(self) -> str: ...


class PassThrough:
    def feed(self, delta: str) -> str:
        return delta

    def finish(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class TurnHooks:
    input_guard: ContentGuard = field(default_factory=AllowAll)
    tool_output_guard: ContentGuard = field(default_factory=AllowAll)
    redactor: Redactor = field(default_factory=NoRedaction)
    tool_policy: ToolPolicy = field(default_factory=AllowTools)
    output_filter_factory: Callable[[], OutputFilter] = PassThrough
