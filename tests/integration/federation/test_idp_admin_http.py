"""The IdP and group-mapping admin API: MFA admins only, validated, audited, tenant-bound;
and discovery by e-mail domain for the login page."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import Platform

from obsigen.authz.permissions import Role
from obsigen.db.models import AuditEventRecord
from obsigen.identity.tenants import tenant_by_name

pytestmark = pytest.mark.asyncio


def oidc_idp(slug: str = "corp", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "slug": slug,
        "protocol": "oidc",
        "display_name": "Corp SSO",
        "domains": ["Corp.Example.EU"],
        "config": {
            "issuer": "https://idp.corp.example.eu",
            "client_id": "obsigen",
            "client_secret": "env:CORP_OIDC_SECRET",
        },
    }
    body.update(overrides)
    return body


async def test_admin_creates_lists_updates_and_deletes_an_idp(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    headers = platform.auth(admin.token)
    created = await platform.client.post("/api/v1/idps", json=oidc_idp(), headers=headers)
    assert created.status_code == 201, created.text
    idp = created.json()
    assert idp["domains"] == ["corp.example.eu"]
    assert idp["login_url"] == f"/auth/oidc/{idp['id']}/login"
    assert idp["config"]["client_secret"] == "env:CORP_OIDC_SECRET"

    listed = await platform.client.get("/api/v1/idps", headers=headers)
    assert [row["slug"] for row in listed.json()["data"]] == ["corp"]

    patched = await platform.client.patch(
        f"/api/v1/idps/{idp['id']}", json={"enabled": False}, headers=headers
    )
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False

    deleted = await platform.client.delete(f"/api/v1/idps/{idp['id']}", headers=headers)
    assert deleted.status_code == 204
    gone = await platform.client.get(f"/api/v1/idps/{idp['id']}", headers=headers)
    assert gone.status_code == 404

    async with platform.services.sessions() as session:
        tenant = await tenant_by_name(session, admin.tenant)
        actions = [
            row.record
            for row in await session.scalars(
                select(AuditEventRecord).where(
                    AuditEventRecord.tenant_id == tenant.id,
                    AuditEventRecord.event_type == "admin.change",
                )
            )
        ]
    joined = " ".join(actions)
    for action in ("idp.create", "idp.update", "idp.delete"):
        assert action in joined


async def test_an_inline_client_secret_is_refused(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    body = oidc_idp()
    body["config"]["client_secret"] = "s3cr3t-value-pasted-here"  # pragma: allowlist secret
    response = await platform.client.post(
        "/api/v1/idps", json=body, headers=platform.auth(admin.token)
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "s3cr3t" not in response.text


@pytest.mark.parametrize(
    "change",
    [
        {"config": {"issuer": "http://idp.example.eu", "client_id": "x"}},  # http off loopback
        {"config": {"issuer": "https://idp.example.eu", "client_id": "x", "scopes": ["email"]}},
        {"domains": ["*.example.eu"]},
        {"slug": "Bad Slug"},
        {"protocol": "ldap"},
    ],
)
async def test_invalid_idps_are_refused(platform: Platform, change: dict[str, Any]) -> None:
    admin = await platform.login(role=Role.ADMIN)
    response = await platform.client.post(
        "/api/v1/idps", json=oidc_idp(**change), headers=platform.auth(admin.token)
    )
    assert response.status_code == 422, response.text


async def test_members_and_password_only_admins_cannot_manage_idps(platform: Platform) -> None:
    tenant = await platform.tenant()
    member = await platform.login(tenant, Role.MEMBER)
    refused = await platform.client.post(
        "/api/v1/idps", json=oidc_idp(), headers=platform.auth(member.token)
    )
    assert refused.status_code == 403
    admin = await platform.login(tenant, Role.ADMIN, mfa=False)
    refused = await platform.client.post(
        "/api/v1/idps", json=oidc_idp(), headers=platform.auth(admin.token)
    )
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("mfa-required")


async def test_another_tenants_idp_is_not_found(platform: Platform) -> None:
    first = await platform.login(role=Role.ADMIN)
    second = await platform.login(role=Role.ADMIN)
    created = await platform.client.post(
        "/api/v1/idps", json=oidc_idp(), headers=platform.auth(first.token)
    )
    idp_id = created.json()["id"]
    for method in ("GET", "PATCH", "DELETE"):
        response = await platform.client.request(
            method,
            f"/api/v1/idps/{idp_id}",
            json={"enabled": False} if method == "PATCH" else None,
            headers=platform.auth(second.token),
        )
        assert response.status_code == 404, (method, response.text)


async def test_group_mappings_are_bounded_by_the_admins_own_permissions(
    platform: Platform,
) -> None:
    tenant = await platform.tenant()
    admin = await platform.login(tenant, Role.ADMIN)
    headers = platform.auth(admin.token)
    idp = (await platform.client.post("/api/v1/idps", json=oidc_idp(), headers=headers)).json()
    source = f"idp:{idp['id']}"
    ok = await platform.client.post(
        "/api/v1/group-mappings",
        json={"source": source, "group": "engineering", "role": "member"},
        headers=headers,
    )
    assert ok.status_code == 201, ok.text
    # An admin lacks the owner's permissions: mapping a group to owner is an escalation.
    escalation = await platform.client.post(
        "/api/v1/group-mappings",
        json={"source": source, "group": "it", "role": "owner"},
        headers=headers,
    )
    assert escalation.status_code == 403
    duplicate = await platform.client.post(
        "/api/v1/group-mappings",
        json={"source": source, "group": "engineering", "role": "member"},
        headers=headers,
    )
    assert duplicate.status_code == 409
    unknown_source = await platform.client.post(
        "/api/v1/group-mappings",
        json={"source": "idp:" + "0" * 32, "group": "x", "role": "member"},
        headers=headers,
    )
    assert unknown_source.status_code == 404
    listed = await platform.client.get(
        "/api/v1/group-mappings", params={"source": source}, headers=headers
    )
    assert [(m["group"], m["role"]) for m in listed.json()["data"]] == [("engineering", "member")]
    removed = await platform.client.delete(
        f"/api/v1/group-mappings/{ok.json()['id']}", headers=headers
    )
    assert removed.status_code == 204


async def test_discovery_lists_the_tenants_enabled_idps_for_the_domain(
    platform: Platform,
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    headers = platform.auth(admin.token)
    await platform.client.post("/api/v1/idps", json=oidc_idp("corp"), headers=headers)
    disabled = oidc_idp("old", enabled=False)
    await platform.client.post("/api/v1/idps", json=disabled, headers=headers)
    other = oidc_idp("partner", domains=["partner.example.eu"])
    await platform.client.post("/api/v1/idps", json=other, headers=headers)

    found = await platform.client.get(
        "/auth/sso/discover", params={"tenant": admin.tenant, "email": "ana@CORP.example.eu"}
    )
    assert found.status_code == 200
    assert [idp["slug"] for idp in found.json()["data"]] == ["corp"]
    for params in (
        {"tenant": admin.tenant, "email": "ana@elsewhere.example.eu"},
        {"tenant": "no-such-tenant", "email": "ana@corp.example.eu"},
    ):
        empty = await platform.client.get("/auth/sso/discover", params=params)
        assert empty.status_code == 200
        assert empty.json()["data"] == []
