"""Another tenant's (or another principal's) conversation ids answer 404 on every route."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Platform

# (method, path template, JSON body) for every route that takes a conversation id.
CONVERSATION_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/conversations/{id}", None),
    ("PATCH", "/api/v1/conversations/{id}", {"title": "mine now"}),
    ("DELETE", "/api/v1/conversations/{id}", None),
    ("GET", "/api/v1/conversations/{id}/messages", None),
    ("POST", "/api/v1/conversations/{id}/messages", {"content": "hi", "model": "fake-model"}),
    (
        "POST",
        "/v1/chat/completions",
        {
            "model": "fake-model",
            "messages": [{"role": "user", "content": "hi"}],
            "conversation_id": "{id}",
        },
    ),
    ("GET", "/api/v1/conversations?before={id}", None),
]


def _fill(value: Any, conversation_id: str) -> Any:
    if isinstance(value, str):
        return value.replace("{id}", conversation_id)
    if isinstance(value, dict):
        return {k: _fill(v, conversation_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, conversation_id) for v in value]
    return value


async def _owned_conversation(platform: Platform, key: str) -> str:
    response = await platform.chat(key, "tenant A's secret plans")
    assert response.status_code == 200
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


@pytest.mark.parametrize(("method", "path", "body"), CONVERSATION_ROUTES)
async def test_other_tenant_gets_404(
    platform: Platform, method: str, path: str, body: dict[str, Any] | None
) -> None:
    owner = await platform.api_key(await platform.tenant("a"))
    intruder = await platform.api_key(await platform.tenant("b"))
    conversation_id = await _owned_conversation(platform, owner)
    requests_before = len(platform.upstream.chat_requests)

    response = await platform.client.request(
        method,
        _fill(path, conversation_id),
        json=_fill(body, conversation_id),
        headers=platform.auth(intruder),
    )

    assert response.status_code == 404, response.text
    assert response.json()["type"].endswith("/not-found")
    assert conversation_id not in response.text
    assert len(platform.upstream.chat_requests) == requests_before
    # The owner's conversation is untouched.
    check = await platform.client.get(
        f"/api/v1/conversations/{conversation_id}", headers=platform.auth(owner)
    )
    assert check.status_code == 200
    assert check.json()["title"] == "tenant A's secret plans"
    assert len(check.json()["messages"]) == 2


@pytest.mark.parametrize(("method", "path", "body"), CONVERSATION_ROUTES)
async def test_other_principal_in_same_tenant_gets_404(
    platform: Platform, method: str, path: str, body: dict[str, Any] | None
) -> None:
    tenant = await platform.tenant()
    owner, colleague = await platform.api_key(tenant), await platform.api_key(tenant)
    conversation_id = await _owned_conversation(platform, owner)

    response = await platform.client.request(
        method,
        _fill(path, conversation_id),
        json=_fill(body, conversation_id),
        headers=platform.auth(colleague),
    )

    assert response.status_code == 404


async def test_missing_and_foreign_ids_answer_identically(platform: Platform) -> None:
    owner = await platform.api_key(await platform.tenant("a"))
    intruder = await platform.api_key(await platform.tenant("b"))
    foreign = await _owned_conversation(platform, owner)

    a = await platform.client.get(
        f"/api/v1/conversations/{foreign}", headers=platform.auth(intruder)
    )
    b = await platform.client.get(
        "/api/v1/conversations/" + "0" * 32, headers=platform.auth(intruder)
    )

    assert (a.status_code, a.json()) == (b.status_code, b.json())


async def test_listing_shows_only_own_conversations(platform: Platform) -> None:
    owner = await platform.api_key(await platform.tenant("a"))
    other = await platform.api_key(await platform.tenant("b"))
    mine = await _owned_conversation(platform, owner)
    theirs = await _owned_conversation(platform, other)

    listed = await platform.client.get("/api/v1/conversations", headers=platform.auth(owner))

    ids = {c["id"] for c in listed.json()}
    assert mine in ids
    assert theirs not in ids


async def test_the_legitimate_owner_can_use_every_route(platform: Platform) -> None:
    owner = await platform.api_key()
    for method, path, body in CONVERSATION_ROUTES:
        conversation_id = await _owned_conversation(platform, owner)
        response = await platform.client.request(
            method,
            _fill(path, conversation_id),
            json=_fill(body, conversation_id),
            headers=platform.auth(owner),
        )
        assert response.status_code in (200, 201, 204), (method, path, response.text)
