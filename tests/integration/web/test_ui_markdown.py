"""POST /ui/api/markdown: only for signed-in callers; returns sanitised HTML for each text."""

from __future__ import annotations

from tests.conftest import Platform

from obsigen.web.ui.router import MAX_MARKDOWN_CHARS


async def test_renders_and_sanitises_for_a_member(platform: Platform) -> None:
    token = await platform.user_token()

    response = await platform.client.post(
        "/ui/api/markdown",
        json={"texts": ["**hi**", "<script>alert(1)</script>"]},
        headers=platform.auth(token),
    )

    assert response.status_code == 200, response.text
    assert response.json()["html"] == [
        "<p><strong>hi</strong></p>\n",
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n",
    ]


async def test_refused_without_credentials(platform: Platform) -> None:
    response = await platform.client.post("/ui/api/markdown", json={"texts": ["x"]})

    assert response.status_code == 401
    assert response.json()["type"].endswith("/unauthenticated")


async def test_oversized_input_is_a_problem_not_a_crash(platform: Platform) -> None:
    token = await platform.user_token()

    response = await platform.client.post(
        "/ui/api/markdown",
        json={"texts": ["a" * (MAX_MARKDOWN_CHARS // 2 + 1)] * 2},
        headers=platform.auth(token),
    )

    assert response.status_code == 422
    assert response.json()["type"].endswith("/invalid-input")
