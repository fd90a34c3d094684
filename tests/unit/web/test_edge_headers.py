"""Security headers on every response (errors, streams, preflights); HSTS only over HTTPS."""

from __future__ import annotations

import httpx
import pytest
from edge_testkit import edge_app, edge_client, edge_settings
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from obsigen.config import Settings
from obsigen.web.edge import install_edge
from obsigen.web.headers import SECURITY_HEADERS, hsts_value

HSTS = "strict-transport-security"


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name.decode()) == value.decode(), name
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in response.headers["permissions-policy"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ok", 200),
        ("GET", "/missing", 404),
        ("DELETE", "/ok", 405),
        ("POST", "/items", 422),
        ("GET", "/raises", 500),
        ("GET", "/http-500", 500),
        ("GET", "/returns-500", 500),
        ("GET", "/stream", 200),
    ],
)
async def test_every_response_carries_the_security_headers(
    method: str, path: str, status: int
) -> None:
    async with edge_client() as client:
        response = await client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status
    assert_security_headers(response)


async def test_an_unhandled_exception_still_gets_a_problem_body_and_the_headers() -> None:
    async with edge_client(base_url="https://testserver") as client:
        response = await client.get("/raises")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/internal")
    assert_security_headers(response)
    assert HSTS in response.headers


async def test_a_streamed_body_arrives_whole_with_the_headers() -> None:
    async with edge_client() as client, client.stream("GET", "/stream") as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
        assert_security_headers(response)
    assert body == b"one two three"


async def test_no_hsts_over_plain_http() -> None:
    async with edge_client() as client:
        response = await client.get("/ok")
    assert HSTS not in response.headers


@pytest.mark.parametrize("path", ["/ok", "/missing", "/raises"])
async def test_hsts_over_https_for_a_year_with_subdomains(path: str) -> None:
    async with edge_client(base_url="https://testserver") as client:
        response = await client.get(path)
    assert response.headers[HSTS] == "max-age=31536000; includeSubDomains"


async def test_hsts_max_age_is_configurable_upwards() -> None:
    settings = edge_settings(server={"hsts_max_age_s": 63_072_000})
    async with edge_client(settings, base_url="https://testserver") as client:
        response = await client.get("/ok")
    assert response.headers[HSTS] == "max-age=63072000; includeSubDomains"


@pytest.mark.parametrize("age", [0, 86_400, 31_535_999])
def test_hsts_shorter_than_a_year_is_refused(age: int) -> None:
    with pytest.raises(ValidationError, match="hsts_max_age_s"):
        edge_settings(server={"hsts_max_age_s": age})
    with pytest.raises(ValueError, match="one year"):
        hsts_value(age)


async def test_a_route_that_sets_its_own_csp_keeps_it() -> None:
    async with edge_client() as client:
        response = await client.get("/own-headers")
    assert response.headers["content-security-policy"] == "default-src 'none'"
    assert response.headers["x-frame-options"] == "DENY"


async def test_middleware_added_after_install_edge_is_inside_the_edge() -> None:
    """A rate limiter added later answers 429 itself; the edge headers still reach the client."""

    class Refuse:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            await PlainTextResponse("slow down", status_code=429)(scope, receive, send)

    app = edge_app(edge_settings())
    app.add_middleware(Refuse)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.get("/ok")
    assert response.status_code == 429
    assert_security_headers(response)
    assert HSTS in response.headers


def test_install_edge_twice_is_refused() -> None:
    app = FastAPI()
    install_edge(app, Settings.model_validate({}))
    with pytest.raises(RuntimeError, match="already"):
        install_edge(app, Settings.model_validate({}))
