"""Login, refresh rotation, logout, step-up and revocation through the HTTP API."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pyotp
from tests.conftest import Platform

from obsigen.authz.permissions import Role

POLICY = {"rules": [], "defaults": {"low": "allow", "high": "approval"}}


def problem_type(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    return str(body["type"]).rsplit("/", 1)[-1]


async def models(platform: Platform, token: str) -> httpx.Response:
    return await platform.client.get("/v1/models", headers=platform.auth(token))


async def test_member_logs_in_and_the_token_works(platform: Platform) -> None:
    user = await platform.login(role=Role.MEMBER)

    assert (await models(platform, user.token)).status_code == 200
    me = (await platform.client.get("/auth/me", headers=platform.auth(user.token))).json()
    assert me["id"] == user.user_id
    assert me["roles"] == ["member"]
    assert me["mfa"] is False
    assert me["amr"] == ["pwd"]


async def test_failed_logins_look_the_same_whatever_was_wrong(platform: Platform) -> None:
    user = await platform.login(role=Role.MEMBER)
    attempts = [
        {"tenant": user.tenant, "email": user.email, "password": "wrong-password-123"},
        {"tenant": user.tenant, "email": "nobody@example.eu", "password": user.password},
        {"tenant": "no-such-tenant", "email": user.email, "password": user.password},
    ]
    answers = [await platform.client.post("/auth/login", json=body) for body in attempts]

    assert {r.status_code for r in answers} == {401}
    assert len({r.text for r in answers}) == 1
    assert problem_type(answers[0]) == "login-failed"


async def test_refresh_rotates_and_a_reused_token_ends_the_session(platform: Platform) -> None:
    user = await platform.login(role=Role.MEMBER)

    first = await platform.client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != user.refresh_token
    assert (await models(platform, rotated["access_token"])).status_code == 200

    # Someone replays the spent token: the whole family dies, the thief's and the owner's.
    replay = await platform.client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert replay.status_code == 401
    after = await platform.client.post(
        "/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert after.status_code == 401
    assert (await models(platform, rotated["access_token"])).status_code == 401
    assert (await models(platform, user.token)).status_code == 401


async def test_logout_kills_the_access_token_at_once(platform: Platform) -> None:
    user = await platform.login(role=Role.MEMBER)
    other = await platform.login(user.tenant, Role.MEMBER)

    response = await platform.client.post("/auth/logout", headers=platform.auth(user.token))
    assert response.status_code == 204

    assert (await models(platform, user.token)).status_code == 401
    refreshed = await platform.client.post(
        "/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert refreshed.status_code == 401
    assert (await models(platform, other.token)).status_code == 200


async def test_admin_without_mfa_is_asked_to_step_up(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN, mfa=False)
    assert admin.totp_secret

    denied = await platform.client.put(
        "/api/v1/tool-policy", json=POLICY, headers=platform.auth(admin.token)
    )
    assert denied.status_code == 403
    assert problem_type(denied) == "mfa-required"
    assert "insufficient_user_authentication" in denied.headers["www-authenticate"]
    # Member-level work needs no second factor.
    assert (await models(platform, admin.token)).status_code == 200

    wrong = await platform.client.post(
        "/auth/mfa/step-up", json={"totp": "000000"}, headers=platform.auth(admin.token)
    )
    assert wrong.status_code == 401
    stepped = await platform.client.post(
        "/auth/mfa/step-up",
        json={"totp": pyotp.TOTP(admin.totp_secret).now()},
        headers=platform.auth(admin.token),
    )
    assert stepped.status_code == 200, stepped.text
    assert stepped.json()["mfa"] is True
    token = stepped.json()["access_token"]
    allowed = await platform.client.put(
        "/api/v1/tool-policy", json=POLICY, headers=platform.auth(token)
    )
    assert allowed.status_code == 200, allowed.text


async def test_an_account_with_totp_cannot_log_in_with_the_password_alone(
    platform: Platform,
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    assert admin.totp_secret

    bare = await platform.client.post(
        "/auth/login",
        json={"tenant": admin.tenant, "email": admin.email, "password": admin.password},
    )
    assert bare.status_code == 401
    assert problem_type(bare) == "second-factor-required"
    # A code for the next time step is accepted once (window ±1 step), then never again.
    body = {
        "tenant": admin.tenant,
        "email": admin.email,
        "password": admin.password,
        "totp": pyotp.TOTP(admin.totp_secret).at(time.time() + 30),
    }
    assert (await platform.client.post("/auth/login", json=body)).status_code == 200
    replay = await platform.client.post("/auth/login", json=body)
    assert replay.status_code == 401


async def test_recovery_codes_work_once(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    issued = await platform.client.post(
        "/auth/mfa/recovery-codes", headers=platform.auth(admin.token)
    )
    assert issued.status_code == 200, issued.text
    code = issued.json()["codes"][0]
    body = {
        "tenant": admin.tenant,
        "email": admin.email,
        "password": admin.password,
        "recovery_code": code,
    }

    first = await platform.client.post("/auth/login", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["mfa"] is True
    second = await platform.client.post("/auth/login", json=body)
    assert second.status_code == 401


async def test_password_only_session_cannot_issue_recovery_codes(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN, mfa=False)
    response = await platform.client.post(
        "/auth/mfa/recovery-codes", headers=platform.auth(admin.token)
    )
    assert response.status_code == 403
    assert problem_type(response) == "mfa-required"


async def test_admin_revokes_every_session_of_a_member(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    member = await platform.login(admin.tenant, Role.MEMBER)
    foreign_admin = await platform.login(role=Role.ADMIN)

    foreign = await platform.client.delete(
        f"/api/v1/users/{member.user_id}/sessions", headers=platform.auth(foreign_admin.token)
    )
    assert foreign.status_code == 404
    assert (await models(platform, member.token)).status_code == 200

    revoked = await platform.client.delete(
        f"/api/v1/users/{member.user_id}/sessions", headers=platform.auth(admin.token)
    )
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] == 1
    assert (await models(platform, member.token)).status_code == 401
    assert (await models(platform, admin.token)).status_code == 200


async def test_member_cannot_revoke_sessions(platform: Platform) -> None:
    member = await platform.login(role=Role.MEMBER)
    other = await platform.login(member.tenant, Role.MEMBER)
    response = await platform.client.delete(
        f"/api/v1/users/{other.user_id}/sessions", headers=platform.auth(member.token)
    )
    assert response.status_code == 403
    assert problem_type(response) == "forbidden"


async def test_own_sessions_listed_and_ended(platform: Platform) -> None:
    user = await platform.login(role=Role.MEMBER)
    listed = await platform.client.get("/auth/sessions", headers=platform.auth(user.token))
    assert listed.status_code == 200
    assert [s["current"] for s in listed.json()] == [True]

    ended = await platform.client.delete("/auth/sessions", headers=platform.auth(user.token))
    assert ended.json() == {"revoked": 1}
    assert (await models(platform, user.token)).status_code == 401


async def test_jwks_publishes_the_key_that_signs_tokens(platform: Platform) -> None:
    user = await platform.login(role=Role.MEMBER)
    jwks = (await platform.client.get("/.well-known/jwks.json")).json()
    kid = jwt_header(user.token)["kid"]

    assert kid in {key["kid"] for key in jwks["keys"]}
    assert all("d" not in key for key in jwks["keys"])


def jwt_header(token: str) -> dict[str, Any]:
    import base64
    import json

    head = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return decoded


async def test_a_password_only_session_cannot_replace_the_second_factor(
    platform: Platform,
) -> None:
    admin = await platform.login(role=Role.ADMIN, mfa=False)
    for path in ("/auth/mfa/totp/enroll", "/auth/mfa/webauthn/register/options"):
        response = await platform.client.post(path, headers=platform.auth(admin.token))
        assert response.status_code == 403, path
        assert problem_type(response) == "mfa-required"

    # A member without any factor enrols one, and the confirming code steps the session up.
    member = await platform.login(role=Role.MEMBER)
    enrolled = await platform.client.post(
        "/auth/mfa/totp/enroll", headers=platform.auth(member.token)
    )
    assert enrolled.status_code == 200, enrolled.text
    secret = pyotp.parse_uri(enrolled.json()["otpauth_uri"]).secret
    confirmed = await platform.client.post(
        "/auth/mfa/totp/confirm",
        json={"code": pyotp.TOTP(secret).now()},
        headers=platform.auth(member.token),
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["mfa"] is True


async def test_wrong_codes_are_limited_per_user(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN, mfa=False)
    limit = platform.settings.auth.max_failures
    for _ in range(limit):
        wrong = await platform.client.post(
            "/auth/mfa/step-up", json={"totp": "000000"}, headers=platform.auth(admin.token)
        )
        assert wrong.status_code == 401
    assert admin.totp_secret
    # Even the right code is refused until the window ends.
    locked = await platform.client.post(
        "/auth/mfa/step-up",
        json={"totp": pyotp.TOTP(admin.totp_secret).now()},
        headers=platform.auth(admin.token),
    )
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
