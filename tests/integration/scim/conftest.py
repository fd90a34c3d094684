"""A tenant with a SCIM token, and helpers to call /scim/v2 as its identity provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from tests.conftest import Platform

from obsigen.identity.tenants import tenant_by_name
from obsigen.scim.tokens import create_token

SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass
class Scim:
    platform: Platform
    tenant: str
    tenant_id: str
    token: str
    token_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": SCIM_JSON}

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.platform.client.request(
            method, f"/scim/v2{path}", json=body, headers=headers, **kwargs
        )

    async def create_user(self, user_name: str, **attributes: Any) -> dict[str, Any]:
        body = {"schemas": [USER_SCHEMA], "userName": user_name, **attributes}
        response = await self.call("POST", "/Users", body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def create_group(self, name: str, members: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        body = {
            "schemas": [GROUP_SCHEMA],
            "displayName": name,
            "members": [{"value": member} for member in members],
        }
        response = await self.call("POST", "/Groups", body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


async def new_scim(platform: Platform, expires_in: timedelta | None = None) -> Scim:
    tenant = await platform.tenant("scim")
    async with platform.services.sessions.begin() as session:
        row = await tenant_by_name(session, tenant)
        created = await create_token(session, row, "idp", expires_in, max_age=timedelta(days=365))
        return Scim(platform, tenant, row.id, created.secret, created.token.id)


@pytest.fixture
async def scim(platform: Platform) -> Scim:
    return await new_scim(platform)
