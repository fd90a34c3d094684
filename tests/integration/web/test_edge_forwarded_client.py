"""The login lockout counts the real client behind a trusted proxy, not what the client claims."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.app import create_app
from obsigen.config import Settings
from obsigen.identity.login import IP_LIMIT_FACTOR
from obsigen.services import build_services
from obsigen.web.edge import install_edge

PROXY = "10.0.0.2"


@pytest.fixture
async def behind_proxy(
    database_url: str, upstream_server: tuple[FakeUpstream, str], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, its peer being a trusted reverse proxy at 10.0.0.2."""
    settings = Settings.model_validate(
        {
            "paths": {"data_dir": tmp_path / "var"},
            "storage": {"database_url": database_url},
            "inference": {"provider": "openai", "base_url": upstream_server[1], "region": "de"},
            "server": {"trusted_proxies": [PROXY]},
            # One failure per account; IP_LIMIT_FACTOR failures per source address.
            "auth": {"max_failures": 1},
        }
    )
    services = build_services(settings)
    app = create_app(settings, services)
    # create_app installs the edge itself once it calls install_edge; until then, do it here.
    if not getattr(app.state, "edge_installed", False):
        install_edge(app, settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(PROXY, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    await services.aclose()


async def login_from(client: httpx.AsyncClient, tenant: str, forwarded_for: str) -> int:
    body = {"tenant": tenant, "email": f"{uuid.uuid4().hex[:10]}@example.eu", "password": "x"}
    response = await client.post(
        "/auth/login", json=body, headers={"X-Forwarded-For": forwarded_for}
    )
    return response.status_code


async def test_rotating_the_spoofable_entry_does_not_escape_the_address_lockout(
    behind_proxy: httpx.AsyncClient,
) -> None:
    tenant = f"edge-{uuid.uuid4().hex[:8]}"
    attacker, bystander = "198.51.100.7", "198.51.100.8"
    # Each guess claims a new origin in the left-most entry; the proxy appended the real one.
    for i in range(IP_LIMIT_FACTOR):
        assert await login_from(behind_proxy, tenant, f"192.0.2.{i}, {attacker}") == 401
    assert await login_from(behind_proxy, tenant, f"192.0.2.200, {attacker}") == 429
    # Another client behind the same proxy is not locked out with the attacker.
    assert await login_from(behind_proxy, tenant, bystander) == 401
