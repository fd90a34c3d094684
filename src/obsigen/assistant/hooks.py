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
    policy_version: int = 0  # of the tenant's safeguard policy that decided; audited


ALLOW = GuardResult("allow")


class ContentGuard(Protocol):
    """Judges text the model is about to read: the user's prompt, or a tool's output."""

    async def check(self, text: str, *, source: str, tenant_id: str | None = None) -> GuardResult:
        """``tenant_id`` selects the tenant's policy (mode, thresholds) where it has its own."""
        ...


class AllowAll:
    async def check(self, text: str, *, source: str, tenant_id: str | None = None) -> GuardResult:
        return ALLOW


class OutputFilter(Protocol):
    """Stateful per response: may hold back text across chunks (e.g. a secret split in two)."""

    def feed(self, delta: str) -> str: ...

    def finish(self) -> str: ...


class PassThrough:
    def feed(self, delta: str) -> str:
        return delta

    def finish(self) -> str:
        return ""


def _unchanged(message: ChatMessage) -> ChatMessage:
    return message


@dataclass(frozen=True, slots=True)
class Redaction:
    messages: tuple[ChatMessage, ...]
    # Stateful like an OutputFilter: a placeholder may arrive split across two deltas.
    restorer: Callable[[], OutputFilter] = PassThrough
    replaced: int = 0
    # For what the model reads later in the turn (tool results), with the same placeholders.
    redact_more: Callable[[ChatMessage], ChatMessage] = _unchanged


class Redactor(Protocol):
    """Replaces secrets and personal data by placeholders before anything leaves for inference."""

    def redact(self, messages: tuple[ChatMessage, ...]) -> Redaction: ...


class NoRedaction:
    def redact(self, messages: tuple[ChatMessage, ...]) -> Redaction:
        return Redaction(messages=messages)


@dataclass(frozen=True, slots=True)
class Canary:
    """The messages for inference with a per-turn canary planted in the system prompt, and the
    canary (None: none planted). The answer repeating it means the system prompt leaked."""

    messages: tuple[ChatMessage, ...]
    token: str | None = None


class CanaryPlanter(Protocol):
    def plant(self, messages: tuple[ChatMessage, ...]) -> Canary: ...


class NoCanary:
    def plant(self, messages: tuple[ChatMessage, ...]) -> Canary:
        return Canary(messages)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    decision: Decision
    rule: str = "default"
    reason: str = ""
    version: int = 0  # of the tenant's policy document that decided
    approval_ttl_s: int = 3600  # how long a parked call may wait for an approver


class ToolPolicy(Protocol):
    async def decide(
        self, principal: Principal, tool: str, arguments: dict[str, Any], *, server_side: bool
    ) -> PolicyDecision: ...


class AllowTools:
    async def decide(
        self, principal: Principal, tool: str, arguments: dict[str, Any], *, server_side: bool
    ) -> PolicyDecision:
        return PolicyDecision("allow", rule="default-allow")


def no_output_filter(canary: str | None) -> OutputFilter:
    return PassThrough()


@dataclass(frozen=True, slots=True)
class TurnHooks:
    input_guard: ContentGuard = field(default_factory=AllowAll)
    tool_output_guard: ContentGuard = field(default_factory=AllowAll)
    redactor: Redactor = field(default_factory=NoRedaction)
    tool_policy: ToolPolicy = field(default_factory=AllowTools)
    canary: CanaryPlanter = field(default_factory=NoCanary)
    # Called once per answer with the turn's canary (None when none was planted).
    output_filter_factory: Callable[[str | None], OutputFilter] = no_output_filter
