"""The CORS matrix on the whole app: allowed origin, another origin and the ``null`` origin
(sandboxed iframes, file: pages), with credentials on and off, for simple requests and
preflights. Only the listed origin is ever granted anything; credentials only when configured."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.conftest import platform_settings, running_platform
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.config import Settings

APP = "https://chat.example.eu"
OTHER = "https://evil.example"


def _with_cors(settings: Settings, credentials: bool) -> Settings:
    data = settings.model_dump()
    data["cors"] = {"allow_origins": [APP], "allow_credentials": credentials}
    return Settings.model_validate(data)


def _granted(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-allow-")}


@pytest.mark.parametrize("credentials", [True, False], ids=["credentials", "no-credentials"])
async def test_cors_matrix(
    credentials: bool,
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    settings = _with_cors(
        platform_settings(tmp_path / "var", database_url, upstream_server[1]), credentials
    )
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with running_platform(settings, upstream) as platform:
        client = platform.client
        for origin in (APP, OTHER, "null"):
            simple = await client.get("/healthz", headers={"Origin": origin})
            pre = await client.options(
                "/v1/chat/completions", headers={"Origin": origin, **preflight}
            )
            for response in (simple, pre):
                # Answers vary on Origin so a cache never hands one origin's grant to another.
                assert "origin" in response.headers.get("vary", "").lower()
                assert "content-security-policy" in response.headers
                if origin != APP:
                    assert _granted(response) == {}, (origin, response.headers)
                    continue
                assert response.headers["access-control-allow-origin"] == APP
                if credentials:
                    assert response.headers["access-control-allow-credentials"] == "true"
                else:
                    assert "access-control-allow-credentials" not in response.headers
            assert simple.status_code == 200
            if origin == APP:
                assert pre.status_code in (200, 204)
                assert "POST" in pre.headers["access-control-allow-methods"]
                assert "authorization" in pre.headers["access-control-allow-headers"].lower()
            else:
                assert pre.status_code >= 400
