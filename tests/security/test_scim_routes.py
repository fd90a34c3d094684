"""Every /scim/v2 route is guarded by a SCIM token, and by nothing else: no token, a user's
session token or an API key all get 401 as SCIM errors, before any handler runs. (The route
matrix sees these routes as ``public()``: no user permission applies to them.)"""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.routing import APIRoute, iter_route_contexts
from tests.conftest import Platform, platform_settings

from obsigen.app import create_app
from obsigen.authz.permissions import Role
from obsigen.web.api.scim import scim_client

PATH_PARAMS = ("user_id", "group_id", "type_id", "schema_id", "rest")


def scim_endpoints(tmp_path: Path) -> list[tuple[str, str, bool]]:
    app = create_app(platform_settings(tmp_path, "sqlite+aiosqlite://", "http://127.0.0.1:9"))
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = str(context.path_format)
        if not isinstance(route, APIRoute) or not path.startswith("/scim/"):
            continue
        guarded = any(dep.call is scim_client for dep in context.dependant.dependencies)
        for method in sorted(set(context.methods or ()) - {"HEAD", "OPTIONS"}):
            found.append((method, path, guarded))
    return found


def test_every_scim_route_depends_on_the_scim_token(tmp_path: Path) -> None:
    endpoints = scim_endpoints(tmp_path)
    assert len(endpoints) >= 20
    assert [e for e in endpoints if not e[2]] == []
    assert scim_client.obsigen_guard == "scim-token"  # type: ignore[attr-defined]


async def test_no_other_credential_opens_a_scim_route(platform: Platform, tmp_path: Path) -> None:
    tenant = await platform.tenant()
    admin = await platform.login(tenant, Role.ADMIN)
    key = await platform.api_key(tenant)
    credentials = {
        "none": {},
        "user session (admin, MFA)": Platform.auth(admin.token),
        "api key": Platform.auth(key),
        "garbage": {"Authorization": "Bearer scim_aaaaaaaaaaaaaaaa_" + "b" * 43},
        "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }
    failures = []
    for method, path, _ in scim_endpoints(tmp_path):
        concrete = path.format(
            **{
                name: uuid.uuid4().hex
                for name in ("user_id", "group_id", "type_id", "schema_id", "rest")
            }
        )
        for name, headers in credentials.items():
            response = await platform.client.request(method, concrete, headers=headers, json={})
            body = response.json()
            if response.status_code != 401 or body.get("schemas") != [
                "urn:ietf:params:scim:api:messages:2.0:Error"
            ]:
                failures.append(f"{method} {path} with {name}: {response.status_code}")
    assert failures == []
