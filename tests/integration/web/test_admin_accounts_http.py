"""Users and API keys for a tenant's admins over HTTP, on SQLite and MariaDB, with real logins:
create a user (generated or given password, TOTP for admin roles), deactivate it (its sessions
and keys stop at once) and reactivate it; list, create and revoke API keys (the secret shown
once, never listed). Attacks: a member, an admin without MFA, an admin handing out a role above
its own, a custom role granting beyond itself, another tenant's ids. Every change and refusal
is in the audit trail, without secrets.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pyotp
from sqlalchemy import select
from tests.conftest import LoggedIn, Platform

from obsigen.authz.permissions import Permission, Role
from obsigen.db.models import AuditEventRecord
from obsigen.identity.apikeys import create_api_key
from obsigen.identity.tenants import tenant_by_name


def _auth(login: LoggedIn | str) -> dict[str, str]:
    return Platform.auth(login if isinstance(login, str) else login.token)


def _slug(response: Any) -> str:
    return str(response.json().get("type", "")).rsplit("/", 1)[-1]


async def _events(platform: Platform, tenant: str, type_: str) -> list[dict[str, Any]]:
    async with platform.services.sessions() as session:
        tenant_id = (await tenant_by_name(session, tenant)).id
        records = await session.scalars(
            select(AuditEventRecord.record)
            .where(AuditEventRecord.tenant_id == tenant_id, AuditEventRecord.event_type == type_)
            .order_by(AuditEventRecord.seq)
        )
        return [json.loads(record) for record in records]


async def _raw_audit(platform: Platform, tenant: str) -> str:
    async with platform.services.sessions() as session:
        tenant_id = (await tenant_by_name(session, tenant)).id
        records = await session.scalars(
            select(AuditEventRecord.record).where(AuditEventRecord.tenant_id == tenant_id)
        )
        return "\n".join(records)


def _email() -> str:
    return f"new-{uuid.uuid4().hex[:10]}@example.eu"


async def _login(platform: Platform, tenant: str, email: str, password: str, **more: str) -> Any:
    body = {"tenant": tenant, "email": email, "password": password, **more}
    return await platform.client.post("/auth/login", json=body)


# --- users -----------------------------------------------------------------------------------


async def test_an_admin_creates_a_user_who_can_sign_in_with_the_password_shown_once(
    platform: Platform,
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    email = _email()

    created = await platform.client.post(
        "/api/v1/users", json={"email": email, "role": "member"}, headers=_auth(admin)
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == email
    assert body["status"] == "active"
    assert body["roles"] == [{"role": "member", "scope": "tenant"}]
    assert body["otpauth_uri"] is None
    password = body["initial_password"]
    assert isinstance(password, str)
    assert len(password) >= 20
    signed_in = await _login(platform, admin.tenant, email, password)
    assert signed_in.status_code == 200, signed_in.text
    # Listed afterwards, without any secret.
    listed = await platform.client.get("/api/v1/users", headers=_auth(admin))
    assert email in listed.text
    assert password not in listed.text
    (event,) = [
        e for e in await _events(platform, admin.tenant, "admin.change")
        if e["data"]["action"] == "user.create"
    ]  # fmt: skip
    assert event["target"] == {"kind": "user", "id": body["id"]}
    assert event["data"]["before"] is None
    assert event["data"]["after"]["roles"] == [{"role": "member", "scope": "tenant"}]
    assert event["data"]["after"]["initial_login"] == "generated"
    assert password not in await _raw_audit(platform, admin.tenant)


async def test_a_given_password_is_used_and_an_admin_role_gets_totp(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    email, password = _email(), "correct horse battery staple"

    created = await platform.client.post(
        "/api/v1/users",
        json={"email": email, "role": "auditor", "password": password},
        headers=_auth(admin),
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["initial_password"] is None
    uri = body["otpauth_uri"]
    assert uri.startswith("otpauth://totp/")
    secret = pyotp.parse_uri(uri).secret
    without = await _login(platform, admin.tenant, email, password)
    assert without.status_code == 401
    signed_in = await _login(platform, admin.tenant, email, password, totp=pyotp.TOTP(secret).now())
    assert signed_in.status_code == 200, signed_in.text
    assert secret not in await _raw_audit(platform, admin.tenant)
    # A short password and a duplicate e-mail are refused as problems.
    short = await platform.client.post(
        "/api/v1/users",
        json={"email": _email(), "role": "member", "password": "short"},
        headers=_auth(admin),
    )
    assert short.status_code == 422
    assert _slug(short) == "invalid-input"
    again = await platform.client.post(
        "/api/v1/users", json={"email": email, "role": "member"}, headers=_auth(admin)
    )
    assert again.status_code == 409
    assert _slug(again) == "conflict"


async def test_a_member_cannot_create_users_or_keys(platform: Platform) -> None:
    member = await platform.login(role=Role.MEMBER)
    attempts = [
        ("POST", "/api/v1/users", {"email": _email(), "role": "member"}),
        ("POST", "/api/v1/api-keys", {"name": "mine", "role": "member"}),
        ("GET", "/api/v1/api-keys", None),
        ("POST", f"/api/v1/users/{member.user_id}/deactivate", None),
    ]
    for method, path, body in attempts:
        response = await platform.client.request(method, path, json=body, headers=_auth(member))
        assert response.status_code == 403, (path, response.text)
        assert _slug(response) == "forbidden"
        assert response.headers["content-type"].startswith("application/problem+json")
    denials = await _events(platform, member.tenant, "authz.decision")
    assert {d["data"]["permission"] for d in denials} >= {
        Permission.USERS_MANAGE.value,
        Permission.APIKEYS_MANAGE.value,
    }


async def test_an_admin_without_a_second_factor_must_step_up(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN, mfa=False)
    response = await platform.client.post(
        "/api/v1/users", json={"email": _email(), "role": "member"}, headers=_auth(admin)
    )
    assert response.status_code == 403
    assert _slug(response) == "mfa-required"


async def test_an_admin_cannot_create_an_owner(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    email = _email()

    response = await platform.client.post(
        "/api/v1/users", json={"email": email, "role": "owner"}, headers=_auth(admin)
    )

    assert response.status_code == 403
    assert _slug(response) == "forbidden"
    assert "tenant:keys:manage" in response.json()["detail"]
    listed = await platform.client.get("/api/v1/users", headers=_auth(admin))
    assert email not in listed.text
    (denial,) = [
        d for d in await _events(platform, admin.tenant, "authz.decision")
        if d["data"].get("action") == "user.create"
    ]  # fmt: skip
    assert denial["outcome"] == "denied"
    # An owner may.
    owner = await platform.login(admin.tenant, Role.OWNER)
    allowed = await platform.client.post(
        "/api/v1/users", json={"email": email, "role": "owner"}, headers=_auth(owner)
    )
    assert allowed.status_code == 201, allowed.text


async def test_deactivation_ends_sessions_and_keys_at_once_and_reactivation_restores_login(
    platform: Platform,
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    user = await platform.login(admin.tenant, Role.MEMBER)
    async with platform.services.sessions.begin() as session:
        tenant = await tenant_by_name(session, admin.tenant)
        key = (
            await create_api_key(session, tenant, "user's key", "member", None,
                                 owner_user_id=user.user_id)
        ).key  # fmt: skip
    assert (await platform.client.get("/v1/models", headers=_auth(key))).status_code == 200
    assert (await platform.client.get("/auth/me", headers=_auth(user))).status_code == 200

    done = await platform.client.post(
        f"/api/v1/users/{user.user_id}/deactivate", headers=_auth(admin)
    )

    assert done.status_code == 200, done.text
    assert done.json()["status"] == "inactive"
    assert done.json()["api_keys_revoked"] == 1
    assert done.json()["sessions_ended"] >= 1
    assert (await platform.client.get("/auth/me", headers=_auth(user))).status_code == 401
    assert (await platform.client.get("/v1/models", headers=_auth(key))).status_code == 401
    refreshed = await platform.client.post(
        "/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert refreshed.status_code == 401
    assert (await _login(platform, user.tenant, user.email, user.password)).status_code == 401
    again = await platform.client.post(
        f"/api/v1/users/{user.user_id}/deactivate", headers=_auth(admin)
    )
    assert again.status_code == 409

    back = await platform.client.post(
        f"/api/v1/users/{user.user_id}/reactivate", headers=_auth(admin)
    )

    assert back.status_code == 200, back.text
    assert back.json()["status"] == "active"
    assert (await _login(platform, user.tenant, user.email, user.password)).status_code == 200
    # A revoked key stays revoked.
    assert (await platform.client.get("/v1/models", headers=_auth(key))).status_code == 401
    changes = [
        e for e in await _events(platform, admin.tenant, "admin.change")
        if e["target"] == {"kind": "user", "id": user.user_id}
    ]  # fmt: skip
    assert [(e["data"]["action"], e["data"]["before"], e["data"]["after"]) for e in changes] == [
        ("user.deactivate", {"status": "active"}, {"status": "inactive"}),
        ("user.reactivate", {"status": "inactive"}, {"status": "active"}),
    ]
    assert changes[0]["data"]["api_keys_revoked"] == "1"


async def test_an_admin_can_neither_deactivate_an_owner_nor_itself(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    owner = await platform.login(admin.tenant, Role.OWNER)

    on_owner = await platform.client.post(
        f"/api/v1/users/{owner.user_id}/deactivate", headers=_auth(admin)
    )
    on_self = await platform.client.post(
        f"/api/v1/users/{admin.user_id}/deactivate", headers=_auth(admin)
    )

    assert on_owner.status_code == 403
    assert _slug(on_owner) == "forbidden"
    assert on_self.status_code == 409
    assert _slug(on_self) == "conflict"
    assert (await platform.client.get("/auth/me", headers=_auth(owner))).status_code == 200
    assert (await platform.client.get("/auth/me", headers=_auth(admin))).status_code == 200
    # The owner may deactivate the admin.
    done = await platform.client.post(
        f"/api/v1/users/{admin.user_id}/deactivate", headers=_auth(owner)
    )
    assert done.status_code == 200, done.text


# --- API keys --------------------------------------------------------------------------------


async def test_api_key_lifecycle_shows_the_key_once_and_revokes_it_at_once(
    platform: Platform,
) -> None:
    admin = await platform.login(role=Role.ADMIN)

    created = await platform.client.post(
        "/api/v1/api-keys",
        json={"name": "ci pipeline", "role": "member", "expires_in_days": 30},
        headers=_auth(admin),
    )

    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("obs_")
    assert body["roles"] == ["member"]
    assert body["state"] == "active"
    assert body["owner_user_id"] == admin.user_id
    assert (await platform.client.get("/v1/models", headers=_auth(key))).status_code == 200
    listed = await platform.client.get("/api/v1/api-keys", headers=_auth(admin))
    assert listed.status_code == 200
    secret = key.rsplit("_", 1)[1]
    assert secret not in listed.text
    assert "secret" not in listed.text
    (row,) = [k for k in listed.json()["data"] if k["id"] == body["id"]]
    assert row["name"] == "ci pipeline"
    assert "key" not in row
    assert listed.json()["max_days"] == platform.settings.auth.apikey_max_days

    revoked = await platform.client.delete(f"/api/v1/api-keys/{body['id']}", headers=_auth(admin))

    assert revoked.status_code == 204
    assert (await platform.client.get("/v1/models", headers=_auth(key))).status_code == 401
    active = await platform.client.get("/api/v1/api-keys", headers=_auth(admin))
    assert body["id"] not in active.text
    everything = await platform.client.get(
        "/api/v1/api-keys", params={"include_revoked": "true"}, headers=_auth(admin)
    )
    (row,) = [k for k in everything.json()["data"] if k["id"] == body["id"]]
    assert row["state"] == "revoked"
    twice = await platform.client.delete(f"/api/v1/api-keys/{body['id']}", headers=_auth(admin))
    assert twice.status_code == 409
    actions = [
        (e["data"]["action"], e["data"]["before"] is None, e["data"]["after"]["revoked_at"] is None)
        for e in await _events(platform, admin.tenant, "admin.change")
        if e["target"] == {"kind": "apikey", "id": body["id"]}
    ]
    assert actions == [("apikey.create", True, True), ("apikey.revoke", False, False)]
    assert secret not in await _raw_audit(platform, admin.tenant)


async def test_api_key_limits_lifetime_and_role(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    too_long = platform.settings.auth.apikey_max_days + 1
    cases = [
        ({"name": "long", "role": "member", "expires_in_days": too_long}, 422, "invalid-input"),
        # A key can never prove a second factor, so administrative roles are refused.
        ({"name": "admin key", "role": "admin"}, 422, "invalid-input"),
        # Above the admin's own permissions: an escalation, refused as such.
        ({"name": "owner key", "role": "owner"}, 403, "forbidden"),
        ({"name": "ghost", "role": "no-such-role"}, 422, "invalid-input"),
    ]
    for body, status, slug in cases:
        response = await platform.client.post("/api/v1/api-keys", json=body, headers=_auth(admin))
        assert response.status_code == status, (body, response.text)
        assert _slug(response) == slug
    listed = await platform.client.get("/api/v1/api-keys", headers=_auth(admin))
    assert listed.json()["data"] == []
    # Without a lifetime: 90 days (the configured maximum is longer).
    made = await platform.client.post(
        "/api/v1/api-keys", json={"name": "default"}, headers=_auth(admin)
    )
    assert made.status_code == 201, made.text
    body = made.json()
    lifetime = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
        body["created_at"]
    )
    assert 89 <= lifetime.days <= 90


async def test_a_custom_role_only_grants_what_it_holds(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    for name, permissions in (
        ("keymaker", [Permission.APIKEYS_MANAGE.value, Permission.MODELS_READ.value]),
        ("reader", [Permission.MODELS_READ.value]),
    ):
        made = await platform.client.post(
            "/api/v1/roles", json={"name": name, "permissions": permissions}, headers=_auth(admin)
        )
        assert made.status_code == 201, made.text
    email, password = _email(), "keymaker's long password"
    created = await platform.client.post(
        "/api/v1/users",
        json={"email": email, "role": "keymaker", "password": password},
        headers=_auth(admin),
    )
    assert created.status_code == 201, created.text
    secret = pyotp.parse_uri(created.json()["otpauth_uri"]).secret
    login = await _login(platform, admin.tenant, email, password, totp=pyotp.TOTP(secret).now())
    keymaker = login.json()["access_token"]

    above = await platform.client.post(
        "/api/v1/api-keys", json={"name": "x", "role": "member"}, headers=_auth(keymaker)
    )
    within = await platform.client.post(
        "/api/v1/api-keys", json={"name": "x", "role": "reader"}, headers=_auth(keymaker)
    )

    assert above.status_code == 403
    assert "tenant:chat:create" in above.json()["detail"]
    assert within.status_code == 201, within.text
    # ...and cannot revoke a key whose role it could not have granted.
    member_key = await platform.client.post(
        "/api/v1/api-keys", json={"name": "m", "role": "member"}, headers=_auth(admin)
    )
    revoke = await platform.client.delete(
        f"/api/v1/api-keys/{member_key.json()['id']}", headers=_auth(keymaker)
    )
    assert revoke.status_code == 403


async def test_another_tenants_keys_and_users_answer_404(platform: Platform) -> None:
    a = await platform.login(role=Role.ADMIN)
    b = await platform.login(role=Role.ADMIN)
    made = await platform.client.post("/api/v1/api-keys", json={"name": "A's"}, headers=_auth(a))
    key_id, key = made.json()["id"], made.json()["key"]

    revoke = await platform.client.delete(f"/api/v1/api-keys/{key_id}", headers=_auth(b))
    deactivate = await platform.client.post(
        f"/api/v1/users/{a.user_id}/deactivate", headers=_auth(b)
    )
    listed = await platform.client.get("/api/v1/api-keys", headers=_auth(b))

    assert revoke.status_code == 404
    assert _slug(revoke) == "not-found"
    assert deactivate.status_code == 404
    assert _slug(deactivate) == "not-found"
    assert key_id not in listed.text
    assert (await platform.client.get("/v1/models", headers=_auth(key))).status_code == 200
    assert (await platform.client.get("/auth/me", headers=_auth(a))).status_code == 200
