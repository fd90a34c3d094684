"""Must-show: deprovisioning by SCIM ends a live session at its next request, and the user's
API keys with it."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select
from tests.conftest import Platform
from tests.integration.scim.conftest import USER_SCHEMA, Scim, patch

from obsigen.authz.permissions import Role
from obsigen.db.models import ApiKey, RoleBinding, User
from obsigen.identity.apikeys import create_api_key
from obsigen.identity.passwords import hash_password
from obsigen.identity.tenants import tenant_by_name


async def signed_in_scim_user(scim: Scim) -> tuple[str, str, str, str, str]:
    """A SCIM user who is logged in and holds an API key:
    (id, email, access token, key, password)."""
    email = f"dep-{secrets.token_hex(4)}@example.eu"
    created = await scim.create_user(email, emails=[{"value": email, "primary": True}])
    password = secrets.token_urlsafe(18)
    async with scim.platform.services.sessions.begin() as session:
        # SCIM users sign in through the IdP; a password stands in for that sign-in here.
        user = await session.get(User, created["id"])
        assert user is not None
        user.password_hash = hash_password(password)
        # Roles come from mapped groups; a local binding keeps this test about sessions.
        session.add(
            RoleBinding(
                tenant_id=user.tenant_id, principal_kind="user", principal_id=user.id, role="member"
            )
        )
        key = await create_api_key(
            session,
            await tenant_by_name(session, scim.tenant),
            "laptop",
            Role.MEMBER,
            None,
            owner_user_id=user.id,
        )
    login = await scim.platform.client.post(
        "/auth/login", json={"tenant": scim.tenant, "email": email, "password": password}
    )
    assert login.status_code == 200, login.text
    return created["id"], email, login.json()["access_token"], key.key, password


async def still_works(platform: Platform, token: str, key: str) -> tuple[int, int]:
    me = await platform.client.get("/auth/me", headers=Platform.auth(token))
    models = await platform.client.get("/v1/models", headers=Platform.auth(key))
    return me.status_code, models.status_code


@pytest.mark.parametrize("how", ["patch", "put"])
async def test_deactivation_ends_the_session_and_the_api_key(scim: Scim, how: str) -> None:
    user_id, email, token, key, password = await signed_in_scim_user(scim)
    assert await still_works(scim.platform, token, key) == (200, 200)

    if how == "patch":
        response = await scim.call(
            "PATCH", f"/Users/{user_id}", patch({"op": "replace", "path": "active", "value": False})
        )
    else:
        response = await scim.call(
            "PUT",
            f"/Users/{user_id}",
            {"schemas": [USER_SCHEMA], "userName": email, "active": False},
        )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False

    assert await still_works(scim.platform, token, key) == (401, 401)
    async with scim.platform.services.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        assert user.status == "inactive"
        revoked = await session.scalar(
            select(ApiKey.revoked_at).where(ApiKey.owner_user_id == user_id)
        )
        assert revoked is not None
    # And no new session can start, even with the right password.
    again = await scim.platform.client.post(
        "/auth/login", json={"tenant": scim.tenant, "email": email, "password": password}
    )
    assert again.status_code == 401


async def test_reactivation_lets_the_user_sign_in_again_but_keys_stay_revoked(scim: Scim) -> None:
    user_id, _, token, key, _ = await signed_in_scim_user(scim)
    path = f"/Users/{user_id}"
    await scim.call("PATCH", path, patch({"op": "replace", "path": "active", "value": False}))
    await scim.call("PATCH", path, patch({"op": "replace", "path": "active", "value": True}))
    async with scim.platform.services.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        assert user.status == "active"
    assert await still_works(scim.platform, token, key) == (401, 401)


async def test_delete_ends_sessions_and_removes_the_user(scim: Scim) -> None:
    user_id, _, token, key, _ = await signed_in_scim_user(scim)
    assert (await scim.call("DELETE", f"/Users/{user_id}")).status_code == 204
    assert await still_works(scim.platform, token, key) == (401, 401)
    async with scim.platform.services.sessions() as session:
        assert await session.get(User, user_id) is None
    assert (await scim.call("GET", f"/Users/{user_id}")).status_code == 404


async def test_an_unrelated_users_session_is_untouched(scim: Scim) -> None:
    bystander = await scim.platform.login(scim.tenant)
    user_id, _, _, _, _ = await signed_in_scim_user(scim)
    await scim.call(
        "PATCH", f"/Users/{user_id}", patch({"op": "replace", "path": "active", "value": False})
    )
    me = await scim.platform.client.get("/auth/me", headers=Platform.auth(bystander.token))
    assert me.status_code == 200
