"""The UI's page shells and static files: served under the CSP, nothing inline, no traversal."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from obsigen.web.headers import SecurityHeaders
from obsigen.web.problems import install_problem_handlers
from obsigen.web.ui import router as ui
from obsigen.web.ui.router import STATIC_DIR


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(ui.router)
    # public() enforces rate limits, which read this; none are configured here.
    app.state.rate_limits = None
    transport = httpx.ASGITransport(app=SecurityHeaders(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as c:
        yield c


@pytest.mark.parametrize("page", ["login", "chat", "admin"])
async def test_pages_have_no_inline_script_style_or_handlers(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(f"/ui/{page}")

    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    html = response.text
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html
    assert re.findall(r"\sstyle=", html) == []
    assert re.findall(r"\son[a-z]+=", html) == []
    assert f'src="/ui/static/{page}.js' in html


async def test_every_label_names_a_field(client: httpx.AsyncClient) -> None:
    for page in ("login", "chat", "admin"):
        html = (await client.get(f"/ui/{page}")).text
        ids = set(re.findall(r'\sid="([^"]+)"', html))
        for target in re.findall(r'<label for="([^"]+)"', html):
            assert target in ids, (page, target)


async def test_static_files_are_served_with_their_types(client: httpx.AsyncClient) -> None:
    js = await client.get("/ui/static/common.js")
    css = await client.get("/ui/static/app.css")

    assert js.status_code == css.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert css.headers["content-type"].startswith("text/css")
    assert js.content == (STATIC_DIR / "common.js").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/../router.py",
        "/ui/static/%2e%2e/router.py",
        "/ui/static/..%2frouter.py",
        "/ui/static/a/../../markdown.py",
        "/ui/static/%2Fetc%2Fpasswd",
        "/ui/static/missing.js",
        "/ui/static/app.py",
    ],
)
async def test_nothing_outside_static_is_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert "import" not in response.text


async def test_root_redirects_to_chat(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui")

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/chat"
