"""Roles and users over HTTP on SQLite and MariaDB: custom roles CRUD, grants and revocations,
escalation refused, the last owner kept, other tenants' ids answered 404, and every change and
denial in the audit trail.

Callers are real users of the tenant loaded with ``load_principal(..., mfa=True)`` and put in
place of ``authenticate``: this suite tests authorisation, not the login flow.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from tests.conftest import Platform

from obsigen.app import create_app
from obsigen.authz.permissions import ROLE_PERMISSIONS, Role
from obsigen.authz.principal import Principal
from obsigen.db.models import AuditEventRecord, Tenant
from obsigen.errors import Unauthenticated
from obsigen.identity.principals import load_principal
from obsigen.identity.tenants import create_tenant
from obsigen.identity.users import create_user
from obsigen.web.auth import authenticate


@dataclass
class Api:
    platform: Platform
    client: httpx.AsyncClient
    tenant: Tenant
    acting: Principal | None = None

    async def new_tenant(self) -> Tenant:
        async with self.platform.services.sessions.begin() as session:
            return await create_tenant(session, f"rbac-{uuid.uuid4().hex[:10]}")

    async def user(self, role: Role = Role.MEMBER, tenant: Tenant | None = None) -> str:
        tenant = tenant or self.tenant
        email = f"u-{uuid.uuid4().hex[:10]}@example.eu"
        async with self.platform.services.sessions.begin() as session:
            created = await create_user(session, tenant, email, role, None)
        return created.user.id

    async def act_as(self, role: Role, *, mfa: bool = True) -> Principal:
        user_id = await self.user(role)
        async with self.platform.services.sessions() as session:
            self.acting = await load_principal(session, self.tenant.id, "user", user_id, mfa=mfa)
        return self.acting

    async def events(self, type_: str) -> list[dict[str, Any]]:
        async with self.platform.services.sessions() as session:
            records = await session.scalars(
                select(AuditEventRecord.record)
                .where(
                    AuditEventRecord.tenant_id == self.tenant.id,
                    AuditEventRecord.event_type == type_,
                )
                .order_by(AuditEventRecord.seq)
            )
            return [json.loads(record) for record in records]


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[Api]:
    app: FastAPI = create_app(platform.settings, platform.services)
    async with platform.services.sessions.begin() as session:
        tenant = await create_tenant(session, f"rbac-{uuid.uuid4().hex[:10]}")
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        state = Api(platform, client, tenant)

        def acting() -> Principal:
            if state.acting is None:
                raise Unauthenticated("no caller in this test")
            return state.acting

        app.dependency_overrides[authenticate] = acting
        yield state


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    slug: str = response.json()["type"].rsplit("/", 1)[-1]
    return slug


async def test_custom_role_crud_is_audited(api: Api) -> None:
    admin = await api.act_as(Role.ADMIN)

    created = await api.client.post(
        "/api/v1/roles",
        json={
            "name": "support",
            "description": "helpdesk",
            "permissions": ["tenant:users:read", "tenant:chat:create"],
        },
    )
    assert created.status_code == 201, created.text
    assert created.json() == {
        "name": "support",
        "description": "helpdesk",
        "builtin": False,
        "permissions": ["tenant:chat:create", "tenant:users:read"],
        "mfa_required": True,
    }

    listed = await api.client.get("/api/v1/roles")
    assert listed.status_code == 200
    roles = {role["name"]: role for role in listed.json()}
    assert list(roles)[:5] == ["owner", "admin", "auditor", "member", "viewer"]
    assert roles["member"]["builtin"] is True
    assert set(roles["member"]["permissions"]) == set(ROLE_PERMISSIONS[Role.MEMBER])
    assert roles["member"]["mfa_required"] is False
    assert roles["support"]["builtin"] is False

    patched = await api.client.patch(
        "/api/v1/roles/support", json={"permissions": ["tenant:chat:create"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["permissions"] == ["tenant:chat:create"]
    assert patched.json()["description"] == "helpdesk"
    assert patched.json()["mfa_required"] is False

    deleted = await api.client.delete("/api/v1/roles/support")
    assert deleted.status_code == 204
    assert "support" not in {r["name"] for r in (await api.client.get("/api/v1/roles")).json()}
    missing = await api.client.delete("/api/v1/roles/support")
    assert missing.status_code == 404

    changes = await api.events("admin.change")
    assert [e["data"]["action"] for e in changes] == ["role.create", "role.update", "role.delete"]
    for change in changes:
        assert change["actor"] == {"kind": "user", "id": admin.id}
        assert change["target"] == {"kind": "role", "id": "support"}
        assert change["src_endpoint"] == {"ip": "192.0.2.7"}
    create, update, delete = (e["data"] for e in changes)
    assert create["before"] is None
    assert create["after"]["permissions"] == ["tenant:chat:create", "tenant:users:read"]
    assert update["before"]["permissions"] == ["tenant:chat:create", "tenant:users:read"]
    assert update["after"]["permissions"] == ["tenant:chat:create"]
    assert delete["before"]["name"] == "support"
    assert delete["after"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "admin", "permissions": ["tenant:chat:create"]}, "built-in"),
        ({"name": "Bad Name", "permissions": ["tenant:chat:create"]}, "role name"),
        ({"name": "ok-name", "permissions": ["tenant:chat:destroy"]}, "unknown permission"),
    ],
)
async def test_invalid_role_definitions_are_refused(
    api: Api, body: dict[str, Any], message: str
) -> None:
    await api.act_as(Role.ADMIN)
    response = await api.client.post("/api/v1/roles", json=body)
    assert response.status_code == 422
    assert problem_type(response) == "invalid-input"
    assert message in response.json()["detail"]


async def test_grants_and_revocations_are_audited(api: Api) -> None:
    admin = await api.act_as(Role.ADMIN)
    user_id = await api.user(Role.VIEWER)

    granted = await api.client.post(
        f"/api/v1/users/{user_id}/roles", json={"role": "member", "scope": "workspace:w1"}
    )
    assert granted.status_code == 201, granted.text
    assert granted.json() == [
        {"role": "member", "scope": "workspace:w1"},
        {"role": "viewer", "scope": "tenant"},
    ]
    listed = await api.client.get("/api/v1/users")
    assert listed.status_code == 200
    by_id = {u["id"]: u for u in listed.json()}
    assert set(by_id) == {admin.id, user_id}
    assert by_id[user_id]["status"] == "active"
    assert by_id[user_id]["roles"] == granted.json()
    assert (await api.client.get(f"/api/v1/users/{user_id}/roles")).json() == granted.json()

    wrong_scope = await api.client.delete(f"/api/v1/users/{user_id}/roles/member")
    assert wrong_scope.status_code == 404
    revoked = await api.client.delete(
        f"/api/v1/users/{user_id}/roles/member", params={"scope": "workspace:w1"}
    )
    assert revoked.status_code == 204

    changes = [e["data"] for e in await api.events("admin.change")]
    assert [(c["action"], c["role"], c["scope"]) for c in changes] == [
        ("role.grant", "member", "workspace:w1"),
        ("role.revoke", "member", "workspace:w1"),
    ]
    assert changes[0]["before"] == [{"role": "viewer", "scope": "tenant"}]
    assert changes[1]["after"] == [{"role": "viewer", "scope": "tenant"}]
    bad_scope = await api.client.post(
        f"/api/v1/users/{user_id}/roles", json={"role": "member", "scope": "planet:earth"}
    )
    assert bad_scope.status_code == 422


async def test_escalation_is_refused_and_audited(api: Api) -> None:
    admin = await api.act_as(Role.ADMIN)
    user_id = await api.user()

    minted = await api.client.post(
        "/api/v1/roles", json={"name": "keyholder", "permissions": ["tenant:keys:manage"]}
    )
    assert minted.status_code == 403
    assert problem_type(minted) == "forbidden"
    assert "tenant:keys:manage" in minted.json()["detail"]
    crowned = await api.client.post(f"/api/v1/users/{user_id}/roles", json={"role": "owner"})
    assert crowned.status_code == 403
    self_crowned = await api.client.post(f"/api/v1/users/{admin.id}/roles", json={"role": "owner"})
    assert self_crowned.status_code == 403

    denials = await api.events("authz.decision")
    assert [(e["outcome"], e["data"]["action"], e["target"]["id"]) for e in denials] == [
        ("denied", "role.create", "keyholder"),
        ("denied", "role.grant", user_id),
        ("denied", "role.grant", admin.id),
    ]
    assert await api.events("admin.change") == []
    roles = (await api.client.get(f"/api/v1/users/{admin.id}/roles")).json()
    assert roles == [{"role": "admin", "scope": "tenant"}]


async def test_owner_grants_owner_but_the_last_one_stays(api: Api) -> None:
    owner = await api.act_as(Role.OWNER)
    user_id = await api.user()
    granted = await api.client.post(f"/api/v1/users/{user_id}/roles", json={"role": "owner"})
    assert granted.status_code == 201, granted.text

    assert (await api.client.delete(f"/api/v1/users/{user_id}/roles/owner")).status_code == 204
    last = await api.client.delete(f"/api/v1/users/{owner.id}/roles/owner")
    assert last.status_code == 409
    assert problem_type(last) == "conflict"
    assert "owner" in last.json()["detail"]


async def test_other_tenants_ids_are_not_found(api: Api) -> None:
    await api.act_as(Role.OWNER)
    foreign_user = await api.user(Role.MEMBER, tenant=await api.new_tenant())
    responses = [
        await api.client.post(f"/api/v1/users/{foreign_user}/roles", json={"role": "viewer"}),
        await api.client.delete(f"/api/v1/users/{foreign_user}/roles/member"),
        await api.client.get(f"/api/v1/users/{foreign_user}/roles"),
        await api.client.patch("/api/v1/roles/nobody-has-this", json={"description": "x"}),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert {problem_type(r) for r in responses} == {"not-found"}
    users = (await api.client.get("/api/v1/users")).json()
    assert foreign_user not in {u["id"] for u in users}


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER, Role.AUDITOR])
async def test_roles_without_roles_manage_are_denied_and_audited(api: Api, role: Role) -> None:
    caller = await api.act_as(role)
    user_id = await api.user()
    response = await api.client.post(f"/api/v1/users/{user_id}/roles", json={"role": "viewer"})
    assert response.status_code == 403
    assert problem_type(response) == "forbidden"
    (denial,) = await api.events("authz.decision")
    assert denial["actor"] == {"kind": "user", "id": caller.id}
    assert denial["data"] == {"permission": "tenant:roles:manage", "reason": "not-granted"}


async def test_admin_without_a_second_factor_must_step_up(api: Api) -> None:
    await api.act_as(Role.ADMIN, mfa=False)
    response = await api.client.post(
        "/api/v1/roles", json={"name": "ops", "permissions": ["tenant:models:read"]}
    )
    assert response.status_code == 403
    assert problem_type(response) == "mfa-required"
    (denial,) = await api.events("authz.decision")
    assert denial["data"]["reason"] == "mfa-required"
