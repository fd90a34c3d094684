"""Redaction before inference: personal data becomes placeholders, credentials are removed.

Per turn, each distinct personal datum gets one placeholder (``⟦EMAIL_1⟧``; the same value
always the same placeholder), so the model can still refer to it. The mapping lives only in
this turn's memory; the restorer puts the values back into the answer on its way to the user.
Credentials become ``[REDACTED:<kind>]``: they are never forwarded and have nothing to restore.
"""

from __future__ import annotations

import re
from dataclasses import replace

from obsigen.assistant.hooks import Redaction
from obsigen.inference.interfaces import ChatMessage, ToolCallRequest
from obsigen.safeguards.recognizers import Scanner, Span, default_scanner

PLACEHOLDER = re.compile(r"⟦([A-Z][A-Z0-9_]{0,30})_([0-9]{1,6})⟧")
PLACEHOLDER_OPEN = "⟦"
# Longest text that can still turn out to be a placeholder: bounds what the restorer holds.
PLACEHOLDER_MAX = len("⟦") + 31 + 1 + 6 + len("⟧")


def secret_marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


class Vault:
    """One turn's placeholders. Nothing here is persisted, logged or shared between turns."""

    def __init__(self, taken: str = "") -> None:
        self._placeholder_of: dict[str, str] = {}
        self._value_of: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        # A placeholder the user typed must keep meaning itself: never hand out its name.
        self._taken = {m.group() for m in PLACEHOLDER.finditer(taken)}

    def placeholder(self, kind: str, value: str) -> str:
        found = self._placeholder_of.get(value)
        if found is not None:
            return found
        label = kind.upper()
        while True:
            self._counts[label] = self._counts.get(label, 0) + 1
            candidate = f"⟦{label}_{self._counts[label]}⟧"
            if candidate not in self._taken:
                break
        self._placeholder_of[value] = candidate
        self._value_of[candidate] = value
        return candidate

    def restore(self, text: str) -> str:
        if PLACEHOLDER_OPEN not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._value_of.get(m.group(), m.group()), text)


class StreamRestorer:
    """Restores placeholders in an answer that arrives in pieces, holding back a placeholder
    that is cut between two pieces (at most ``PLACEHOLDER_MAX`` characters)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._held = ""

    def feed(self, delta: str) -> str:
        text = self._held + delta
        cut = text.rfind(PLACEHOLDER_OPEN)
        if cut == -1 or "⟧" in text[cut:] or len(text) - cut >= PLACEHOLDER_MAX:
            self._held = ""
            return self._vault.restore(text)
        self._held = text[cut:]
        return self._vault.restore(text[:cut])

    def finish(self) -> str:
        held, self._held = self._held, ""
        return self._vault.restore(held)


class PlaceholderRedactor:
    """The ``Redactor`` hook: scans every message that goes to the model."""

    def __init__(self, scanner: Scanner | None = None) -> None:
        self._scanner = scanner or default_scanner()

    def redact(self, messages: tuple[ChatMessage, ...]) -> Redaction:
        vault = Vault(taken="".join(_texts(messages)))
        counter = _Counter()

        def one(message: ChatMessage) -> ChatMessage:
            return self._message(message, vault, counter)

        redacted = tuple(one(m) for m in messages)
        return Redaction(
            messages=redacted,
            restorer=lambda: StreamRestorer(vault),
            replaced=counter.replaced,
            redact_more=one,
        )

    def _message(self, message: ChatMessage, vault: Vault, counter: _Counter) -> ChatMessage:
        content = self._text(message.content, vault, counter) if message.content else None
        calls = tuple(
            # Arguments are JSON text; placeholders and markers contain no quote or backslash,
            # and no pattern ends inside an escape, so the JSON stays valid.
            ToolCallRequest(call.id, call.name, self._text(call.arguments, vault, counter))
            for call in message.tool_calls
        )
        if content == message.content and calls == message.tool_calls:
            return message
        return replace(message, content=content, tool_calls=calls)

    def _text(self, text: str, vault: Vault, counter: _Counter) -> str:
        spans = self._scanner.scan(text)
        if not spans:
            return text
        counter.replaced += len(spans)
        return apply(text, spans, vault)


def apply(text: str, spans: list[Span], vault: Vault | None) -> str:
    """Replace sorted, non-overlapping spans: personal data by the vault's placeholder (by a
    marker when there is no vault), secrets always by a marker."""
    out: list[str] = []
    last = 0
    for span in spans:
        out.append(text[last : span.start])
        value = text[span.start : span.end]
        if span.category == "personal" and vault is not None:
            out.append(vault.placeholder(span.kind, value))
        else:
            out.append(secret_marker(span.kind))
        last = span.end
    out.append(text[last:])
    return "".join(out)


class _Counter:
    __slots__ = ("replaced",)

    def __init__(self) -> None:
        self.replaced = 0


def _texts(messages: tuple[ChatMessage, ...]) -> list[str]:
    texts = [m.content for m in messages if m.content]
    texts += [c.arguments for m in messages for c in m.tool_calls]
    return texts
