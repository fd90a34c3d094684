"""The SSO completion page and the admin page's federation and security-key parts: shells
under the CSP with nothing inline, every label naming a field, their modules served."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from obsigen.web.headers import SecurityHeaders
from obsigen.web.problems import install_problem_handlers
from obsigen.web.ui import router as ui


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(ui.router)
    app.state.rate_limits = None
    transport = httpx.ASGITransport(app=SecurityHeaders(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as c:
        yield c


def assert_nothing_inline(html: str) -> None:
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html
    assert re.findall(r"\sstyle=", html) == []
    assert re.findall(r"\son[a-z]+=", html) == []


async def test_the_sso_completion_page_is_a_strict_shell(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/sso/complete")

    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    # The page reads a one-time code from its URL: it must never be handed to another site.
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert_nothing_inline(html)
    assert 'src="/ui/static/sso_complete.js' in html
    # Nothing to sign out of yet.
    assert 'id="logout"' not in html


async def test_admin_page_carries_the_federation_and_security_key_parts(
    client: httpx.AsyncClient,
) -> None:
    html = (await client.get("/ui/admin")).text

    assert_nothing_inline(html)
    for element in ("idp-form", "mapping-form", "policy-form", "keys-form", "role-names"):
        assert f'id="{element}"' in html
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    for target in re.findall(r'<label[^>]*\sfor="([^"]+)"', html):
        assert target in ids, target
    for described in re.findall(r'aria-describedby="([^"]+)"', html):
        assert described in ids, described
    assert len(re.findall(r'\sid="([^"]+)"', html)) == len(ids), "duplicate ids"


@pytest.mark.parametrize("name", ["sso_complete.js", "admin_federation.js", "webauthn.js"])
async def test_the_new_modules_are_served(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/ui/static/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    # Plain DOM building only: nothing parses strings as HTML.
    assert "innerHTML" not in response.text
    assert "insertAdjacentHTML" not in response.text
