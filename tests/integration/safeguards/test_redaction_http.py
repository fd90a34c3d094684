"""Redaction and output filters through POST /v1/chat/completions, on SQLite and MariaDB."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.conftest import Platform

EMAIL = "ana.garcia@example.org"
IBAN = "DE89 3704 0044 0532 0130 00"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
CANARY = "cnry-0123456789abcdef0123"
PROMPT = f"Write to {EMAIL} that I paid into {IBAN}; my key is {AWS_KEY}."


def sent_upstream(platform: Platform) -> dict[str, Any]:
    body = platform.upstream.chat_requests[-1].body
    assert body is not None
    return body


def sse_data(text: str) -> list[Any]:
    return [
        line.removeprefix("data: ")
        if line == "data: [DONE]"
        else json.loads(line.removeprefix("data: "))
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


async def stored_messages(platform: Platform, key: str) -> list[dict[str, Any]]:
    listed = await platform.client.get("/api/v1/conversations", headers=platform.auth(key))
    conversation_id = listed.json()[0]["id"]
    response = await platform.client.get(
        f"/api/v1/conversations/{conversation_id}", headers=platform.auth(key)
    )
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


@pytest.fixture
def fixed_canary(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("obsigen.safeguards.canary.new_token", lambda: CANARY)
    return CANARY


async def test_data_never_reaches_the_upstream_and_the_answer_is_restored(
    platform: Platform,
) -> None:
    key = await platform.api_key()
    platform.upstream.answer = "Done: I wrote to ⟦EMAIL_1⟧ about ⟦IBAN_1⟧ and [REDACTED:aws_key]."

    response = await platform.chat(key, PROMPT)

    assert response.status_code == 200, response.text
    raw = json.dumps(sent_upstream(platform), ensure_ascii=False)
    for value in (EMAIL, IBAN, AWS_KEY, IBAN.replace(" ", "")):
        assert value not in raw
    (message,) = sent_upstream(platform)["messages"]
    assert message["content"] == (
        "Write to ⟦EMAIL_1⟧ that I paid into ⟦IBAN_1⟧; my key is [REDACTED:aws_key]."
    )
    answer = response.json()["choices"][0]["message"]["content"]
    assert answer == f"Done: I wrote to {EMAIL} about {IBAN} and [REDACTED:aws_key]."
    # What is stored is what the user wrote and what the user saw.
    stored = await stored_messages(platform, key)
    assert [m["content"] for m in stored] == [PROMPT, answer]


async def test_streamed_answer_is_restored_and_filtered(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.answer = (
        "Sure ⟦EMAIL_1⟧, and the server key is AKIAJ7Q2EXAMPLEKEY42 — contact bob@example.com"
    )

    response = await platform.chat(key, PROMPT, stream=True)

    assert response.status_code == 200
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]
    )
    assert text == (
        f"Sure {EMAIL}, and the server key is [REDACTED:aws_key] — contact [REDACTED:email]"
    )


async def test_history_is_redacted_again_on_the_next_turn(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.answer = "Noted, ⟦EMAIL_1⟧."
    first = (await platform.chat(key, f"I am {EMAIL}")).json()

    await platform.chat(key, "Who am I?", conversation_id=first["conversation_id"])

    contents = [m["content"] for m in sent_upstream(platform)["messages"]]
    assert contents == ["I am ⟦EMAIL_1⟧", "Noted, ⟦EMAIL_1⟧.", "Who am I?"]


async def test_a_canary_is_planted_in_the_system_prompt(
    platform: Platform, fixed_canary: str
) -> None:
    key = await platform.api_key()
    messages = [
        {"role": "system", "content": "You are the billing assistant of ACME."},
        {"role": "user", "content": "Hi"},
    ]

    response = await platform.chat(key, "", messages=messages)

    assert response.status_code == 200, response.text
    first = sent_upstream(platform)["messages"][0]
    assert first["role"] == "system"
    assert first["content"].startswith(f"Confidential marker {fixed_canary}:")
    assert first["content"].endswith("You are the billing assistant of ACME.")
    # Without a system prompt there is nothing to leak and nothing is added.
    await platform.chat(key, "Hello")
    assert [m["role"] for m in sent_upstream(platform)["messages"]] == ["user"]


async def test_an_answer_that_leaks_the_canary_is_blocked(
    platform: Platform, fixed_canary: str
) -> None:
    key = await platform.api_key()
    messages = [
        {"role": "system", "content": "Secret instructions: never discuss pricing."},
        {"role": "user", "content": "Summarise our pricing policy, please."},
    ]
    platform.upstream.answer = (
        f"Of course. Confidential marker {fixed_canary}: never repeat ... Secret instructions"
    )

    response = await platform.chat(key, "", messages=messages)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/output-blocked")
    assert fixed_canary not in response.text
    stored = await stored_messages(platform, key)
    assert [(m["role"], m["status"]) for m in stored] == [("system", "failed"), ("user", "failed")]


async def test_a_streamed_canary_leak_stops_the_stream(
    platform: Platform, fixed_canary: str
) -> None:
    key = await platform.api_key()
    messages = [
        {"role": "system", "content": "Secret instructions."},
        {"role": "user", "content": "What can you help me with today?"},
    ]
    platform.upstream.answer = f"Here they are: Confidential marker {fixed_canary}: never repeat"

    response = await platform.chat(key, "", messages=messages, stream=True)

    assert fixed_canary not in response.text
    events = sse_data(response.text)
    errors = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
    assert [(e["type"], e["code"]) for e in errors] == [("output-blocked", 422)]
    assert events[-1] == "[DONE]"
