"""The platform's own routes apply the request limits and the token budget (not just a test app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import Platform, platform_settings, running_platform
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.authz.permissions import Role


@pytest.fixture
async def limited(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    settings = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    settings.ratelimit.endpoints = {"/v1/chat/completions": "2/minute"}
    settings.ratelimit.token_budget_user = "600/day"
    async with running_platform(settings, upstream) as running:
        yield running


async def test_chat_is_limited_per_principal_with_headers(limited: Platform) -> None:
    key = await limited.api_key(role=Role.MEMBER)
    other = await limited.api_key(role=Role.MEMBER)

    first = await limited.chat(key, max_tokens=16)
    assert first.status_code == 200, first.text
    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert (await limited.chat(key, max_tokens=16)).status_code == 200
    refused = await limited.chat(key, max_tokens=16)
    assert refused.status_code == 429
    assert refused.json()["type"].endswith("/rate-limited")
    assert int(refused.headers["retry-after"]) >= 1
    # Another principal has its own allowance.
    assert (await limited.chat(other, max_tokens=16)).status_code == 200


async def test_a_request_beyond_the_token_budget_never_reaches_the_model(
    limited: Platform,
) -> None:
    key = await limited.api_key(role=Role.MEMBER)
    before = len(limited.upstream.chat_requests)

    refused = await limited.chat(key, max_tokens=4000)
    assert refused.status_code == 429
    assert refused.json()["type"].endswith("/token-budget-exceeded")
    assert len(limited.upstream.chat_requests) == before

    assert (await limited.chat(key, max_tokens=16)).status_code == 200
