"""Concurrent turns never fail on the store (SQLite used to answer "database is locked")."""

from __future__ import annotations

import asyncio

from tests.conftest import Platform


async def test_thirty_two_concurrent_turns_all_succeed(platform: Platform) -> None:
    key = await platform.api_key()

    responses = await asyncio.gather(*(platform.chat(key, f"question {i}") for i in range(32)))

    assert [r.status_code for r in responses] == [200] * 32
    listed = await platform.client.get(
        "/api/v1/conversations?limit=100", headers=platform.auth(key)
    )
    assert len(listed.json()) == 32
