"""Redaction before inference: placeholders round-trip, credentials never come back."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fakes.identifiers import Document, documents

from obsigen.assistant.hooks import Redaction
from obsigen.inference.interfaces import ChatMessage, ToolCallRequest
from obsigen.safeguards.redaction import PLACEHOLDER, PlaceholderRedactor

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
redactor = PlaceholderRedactor()


def restore(redaction: Redaction, pieces: list[str]) -> str:
    restorer = redaction.restorer()
    return "".join(restorer.feed(p) for p in pieces) + restorer.finish()


def user(text: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage("user", text),)


@PROPERTY
@given(documents(with_secrets=False))
def test_personal_data_round_trips(document: Document) -> None:
    redaction = redactor.redact(user(document.text))
    sent = redaction.messages[0].content
    assert sent is not None
    for datum in document.personal:
        assert datum not in sent
    assert restore(redaction, [sent]) == document.text


@PROPERTY
@given(documents(with_secrets=False), st.data())
def test_restoring_a_streamed_answer_equals_restoring_it_whole(
    document: Document, data: st.DataObject
) -> None:
    redaction = redactor.redact(user(document.text))
    sent = redaction.messages[0].content
    assert sent is not None
    for cut in range(len(sent) + 1):
        assert restore(redaction, [sent[:cut], sent[cut:]]) == document.text
    cuts = sorted(data.draw(st.lists(st.integers(0, len(sent)), max_size=8)))
    pieces = [sent[a:b] for a, b in zip([0, *cuts], [*cuts, len(sent)], strict=True)]
    assert restore(redaction, pieces) == document.text


@PROPERTY
@given(documents(with_secrets=True))
def test_credentials_are_never_forwarded_nor_restored(document: Document) -> None:
    redaction = redactor.redact(user(document.text))
    sent = redaction.messages[0].content
    assert sent is not None
    restored = restore(redaction, [sent])
    for secret in document.secrets:
        assert secret not in sent
        assert secret not in restored
    if document.secrets:
        assert "[REDACTED:" in sent
    for datum in document.personal:
        assert datum not in sent


def test_same_value_same_placeholder_and_different_values_different_ones() -> None:
    text = "Write to ana@example.org, cc bob@example.org, then ana@example.org again."
    sent = redactor.redact(user(text)).messages[0].content
    assert sent == "Write to ⟦EMAIL_1⟧, cc ⟦EMAIL_2⟧, then ⟦EMAIL_1⟧ again."


def test_placeholders_are_consistent_across_the_whole_history() -> None:
    history = (
        ChatMessage("system", "Support: help@example.org"),
        ChatMessage("user", "I am ana@example.org"),
        ChatMessage("assistant", "Hello ana@example.org, write to help@example.org"),
    )
    redaction = redactor.redact(history)
    assert [m.content for m in redaction.messages] == [
        "Support: ⟦EMAIL_1⟧",
        "I am ⟦EMAIL_2⟧",
        "Hello ⟦EMAIL_2⟧, write to ⟦EMAIL_1⟧",
    ]
    assert redaction.replaced == 4


def test_a_placeholder_the_user_typed_keeps_its_meaning() -> None:
    text = "The template says ⟦EMAIL_1⟧; mine is ana@example.org"
    redaction = redactor.redact(user(text))
    sent = redaction.messages[0].content
    assert sent == "The template says ⟦EMAIL_1⟧; mine is ⟦EMAIL_2⟧"
    assert restore(redaction, ["⟦EMAIL_1⟧ or ⟦EMAIL_2⟧"]) == "⟦EMAIL_1⟧ or ana@example.org"


def test_unknown_or_broken_placeholders_pass_through() -> None:
    redaction = redactor.redact(user("ana@example.org"))
    answer = ["⟦EMAIL_9⟧ ⟦EM", "AIL_1⟧ ⟦", "email_1⟧ ⟦EMAIL_1"]
    assert restore(redaction, answer) == "⟦EMAIL_9⟧ ana@example.org ⟦email_1⟧ ⟦EMAIL_1"


def test_tool_call_arguments_are_redacted_and_stay_json() -> None:
    arguments = json.dumps(
        {"to": "ana@example.org", "note": "key AKIAIOSFODNN7EXAMPLE", "pem": "-----BEGIN "
         "PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----", "password": "hunter2"}
    )  # fmt: skip
    message = ChatMessage("assistant", None, (ToolCallRequest("c1", "send", arguments),))
    (sent,) = redactor.redact((message,)).messages
    parsed = json.loads(sent.tool_calls[0].arguments)
    assert parsed == {
        "to": "⟦EMAIL_1⟧",
        "note": "key [REDACTED:aws_key]",
        "pem": "[REDACTED:private_key]",
        "password": "[REDACTED:password]",
    }


def test_later_messages_share_the_turns_placeholders() -> None:
    redaction = redactor.redact(user("I am ana@example.org"))
    tool_result = ChatMessage("tool", "found ana@example.org and eve@example.org", tool_call_id="c")
    assert redaction.redact_more(tool_result).content == "found ⟦EMAIL_1⟧ and ⟦EMAIL_2⟧"
    assert restore(redaction, ["⟦EMAIL_2⟧"]) == "eve@example.org"


def test_nothing_to_redact_keeps_the_messages() -> None:
    messages = user("What is the capital of France?")
    redaction = redactor.redact(messages)
    assert redaction.messages == messages
    assert redaction.replaced == 0
    assert not PLACEHOLDER.search(restore(redaction, ["Paris."]))


def test_each_turn_has_its_own_vault() -> None:
    first = redactor.redact(user("ana@example.org"))
    second = redactor.redact(user("bob@example.org"))
    assert restore(first, ["⟦EMAIL_1⟧"]) == "ana@example.org"
    assert restore(second, ["⟦EMAIL_1⟧"]) == "bob@example.org"
