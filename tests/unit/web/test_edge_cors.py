"""CORS: an exact allow-list, preflights judged in full, and misconfigurations refused at load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from edge_testkit import edge_client, edge_settings
from pydantic import ValidationError

from obsigen.config import CorsSettings, Settings, load_settings

APP = "https://chat.example.eu"
OTHER = "https://evil.example"


def cors(**options: Any) -> Settings:
    options.setdefault("allow_origins", [APP])
    return edge_settings(cors=options)


def preflight(
    origin: str, method: str = "POST", headers: str = "authorization, content-type"
) -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return asked


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_no_origins_means_no_cors_headers_at_all() -> None:
    async with edge_client(edge_settings()) as client:
        simple = await client.get("/ok", headers={"Origin": APP})
        pre = await client.options("/ok", headers=preflight(APP, "GET"))
    assert cors_headers(simple) == {}
    assert "vary" not in simple.headers
    # The app itself answers (no OPTIONS route): nothing a browser could read as permission.
    assert pre.status_code == 405
    assert cors_headers(pre) == {}


async def test_an_allowed_origin_is_echoed_with_vary() -> None:
    async with edge_client(cors()) as client:
        response = await client.get("/ok", headers={"Origin": APP})
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in response.headers


async def test_a_disallowed_origin_gets_no_allow_origin() -> None:
    async with edge_client(cors()) as client:
        response = await client.get("/ok", headers={"Origin": OTHER})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert response.headers["vary"] == "Origin"


async def test_origins_match_exactly() -> None:
    async with edge_client(cors()) as client:
        for origin in ("http://chat.example.eu", "https://chat.example.eu:8443", APP + ".evil"):
            response = await client.get("/ok", headers={"Origin": origin})
            assert cors_headers(response) == {}, origin


async def test_a_request_without_origin_still_varies_on_it() -> None:
    async with edge_client(cors()) as client:
        response = await client.get("/ok")
    assert cors_headers(response) == {}
    assert response.headers["vary"] == "Origin"


async def test_an_allowed_preflight_is_answered_with_the_lists() -> None:
    async with edge_client(cors(max_age_s=120)) as client:
        response = await client.options("/items", headers=preflight(APP))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-methods"] == "GET, POST, PUT, PATCH, DELETE"
    assert response.headers["access-control-allow-headers"] == "authorization, content-type"
    assert response.headers["access-control-max-age"] == "120"
    assert "Origin" in response.headers["vary"]
    # The preflight never reaches the app, yet carries the security headers.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("asked", "reason"),
    [
        (preflight(OTHER), "origin not allowed"),
        (preflight(APP, "TRACE"), "method TRACE not allowed"),
        (preflight(APP, "POST", "authorization, x-secret"), "x-secret"),
    ],
)
async def test_a_refused_preflight_grants_nothing(asked: dict[str, str], reason: str) -> None:
    async with edge_client(cors()) as client:
        response = await client.options("/items", headers=asked)
    assert response.status_code == 403
    assert cors_headers(response) == {}
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in response.json()["detail"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_preflight_without_request_headers_is_fine() -> None:
    async with edge_client(cors()) as client:
        response = await client.options("/ok", headers=preflight(APP, "get", ""))
    assert response.status_code == 204


async def test_credentials_only_when_configured() -> None:
    async with edge_client(cors(allow_credentials=True)) as client:
        simple = await client.get("/ok", headers={"Origin": APP})
        pre = await client.options("/items", headers=preflight(APP))
        refused = await client.get("/ok", headers={"Origin": OTHER})
    assert simple.headers["access-control-allow-credentials"] == "true"
    assert pre.headers["access-control-allow-credentials"] == "true"
    assert cors_headers(refused) == {}


async def test_a_wildcard_without_credentials_answers_star() -> None:
    async with edge_client(cors(allow_origins=["*"])) as client:
        response = await client.get("/ok", headers={"Origin": OTHER})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_expose_headers_are_sent_to_allowed_origins() -> None:
    async with edge_client(cors(expose_headers=["Retry-After"])) as client:
        response = await client.get("/ok", headers={"Origin": APP})
    assert response.headers["access-control-expose-headers"] == "retry-after"


async def test_errors_carry_cors_headers_so_the_page_can_read_them() -> None:
    async with edge_client(cors()) as client:
        response = await client.get("/raises", headers={"Origin": APP})
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == APP


async def test_a_route_cannot_grant_cors_on_its_own() -> None:
    async with edge_client(cors()) as client:
        response = await client.get("/own-headers", headers={"Origin": OTHER})
    assert cors_headers(response) == {}


def test_wildcard_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="allow_credentials"):
        CorsSettings(allow_origins=["*"], allow_credentials=True)


def test_wildcard_with_credentials_is_refused_when_the_config_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("OBSIGEN_"):
            monkeypatch.delenv(name)
    config = tmp_path / "obsigen.toml"
    config.write_text('[cors]\nallow_origins = ["*"]\nallow_credentials = true\n')
    with pytest.raises(ValueError, match="any site could make credentialed requests"):
        load_settings(config)


def test_wildcard_must_stand_alone() -> None:
    with pytest.raises(ValidationError, match="stand alone"):
        CorsSettings(allow_origins=["*", APP])


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.eu/",
        "https://chat.example.eu/app",
        "https://chat.example.eu?x=1",
        "https://chat.example.eu#top",
        "chat.example.eu",
        "//chat.example.eu",
        "ftp://chat.example.eu",
        "null",
        "https://user@chat.example.eu",
        "https://chat.example.eu:99999",
        "https://*.example.eu",
        "*.example.eu",
        "https://chat_example.eu",
        "https://[fe80::1%25eth0]",
        "",
    ],
)
def test_malformed_origins_are_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        CorsSettings(allow_origins=[origin])


@pytest.mark.parametrize(
    ("configured", "stored"),
    [
        ("HTTPS://Chat.Example.EU", "https://chat.example.eu"),
        ("https://chat.example.eu:443", "https://chat.example.eu"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:5173", "http://[::1]:5173"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
    ],
)
def test_origins_are_stored_as_browsers_send_them(configured: str, stored: str) -> None:
    assert CorsSettings(allow_origins=[configured]).allow_origins == [stored]


@pytest.mark.parametrize(
    "options",
    [
        {"allow_methods": ["*"]},
        {"allow_methods": ["CONNECT"]},
        {"allow_headers": ["*"]},
        {"allow_headers": ["bad header"]},
        {"expose_headers": ["*"]},
        {"max_age_s": -1},
        {"max_age_s": 86_401},
    ],
)
def test_other_wildcards_and_nonsense_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CorsSettings(allow_origins=[APP], **options)


def test_methods_and_headers_are_normalised() -> None:
    settings = CorsSettings(allow_methods=["get", " Post "], allow_headers=["Authorization"])
    assert settings.allow_methods == ["GET", "POST"]
    assert settings.allow_headers == ["authorization"]
