"""OIDC sign-in end to end against a real OpenID provider (npm ``oidc-provider``) on loopback:
our login redirect, the IdP's login and consent pages driven by httpx, our callback, our
tokens, and the roles the IdP's groups map to. Then every refusal the callback owes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from tests.conftest import LoggedIn, Platform
from tests.integration.federation.conftest import REDIRECT_PREFIX
from tests.integration.federation.oidc_idp import (
    CLIENT_AUTH_ENV,
    CLIENT_ID,
    PUBLIC_CLIENT_ID,
    OidcIdp,
    authorize,
    free_port,
    private_jwks,
    running_idp,
)

from obsigen.authz.permissions import Role

PROBLEMS = "https://obsigen.dev/problems/"


async def add_idp(
    platform: Platform,
    admin: LoggedIn,
    idp: OidcIdp,
    *,
    config: dict[str, Any] | None = None,
    **fields: Any,
) -> str:
    body: dict[str, Any] = {
        "slug": f"idp-{uuid.uuid4().hex[:8]}",
        "protocol": "oidc",
        "display_name": "Test IdP",
        "domains": ["example.eu"],
        "config": {
            "issuer": idp.issuer,
            "client_id": CLIENT_ID,
            "client_secret": f"env:{CLIENT_AUTH_ENV}",
            **(config or {}),
        },
        "jit_provisioning": True,
        **fields,
    }
    response = await platform.client.post(
        "/api/v1/idps", json=body, headers=Platform.auth(admin.token)
    )
    assert response.status_code == 201, response.text
    idp_id: str = response.json()["id"]
    return idp_id


async def map_group(
    platform: Platform, admin: LoggedIn, idp_id: str, group: str, role: str
) -> None:
    response = await platform.client.post(
        "/api/v1/group-mappings",
        json={"source": f"idp:{idp_id}", "group": group, "role": role},
        headers=Platform.auth(admin.token),
    )
    assert response.status_code == 201, response.text


def new_account(idp: OidcIdp, groups: list[str], amr: list[str] | None = None) -> str:
    account = f"a{uuid.uuid4().hex[:10]}"
    idp.set_account(account, email=f"{account}@example.eu", groups=groups, amr=amr)
    return account


async def start(platform: Platform, idp_id: str, query: str = "") -> str:
    response = await platform.client.get(f"/auth/oidc/{idp_id}/login{query}")
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


async def sign_in(platform: Platform, idp_id: str, account: str, query: str = "") -> httpx.Response:
    callback = await authorize(await start(platform, idp_id, query), account, REDIRECT_PREFIX)
    return await platform.client.get(callback)


async def me(platform: Platform, token: str) -> dict[str, Any]:
    response = await platform.client.get("/auth/me", headers=Platform.auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_refused(response: httpx.Response, words: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == PROBLEMS + "oidc-refused"
    assert words in problem["detail"]


# --- the legitimate flow ------------------------------------------------------------------


async def test_code_flow_gives_our_tokens_with_mapped_roles(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp)
    await map_group(platform, admin, idp_id, "staff", Role.MEMBER)
    account = new_account(oidc_idp, ["staff", "unmapped"])

    response = await sign_in(platform, idp_id, account, "?return_to=/chat/42")

    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"]
    assert tokens["return_to"] == "/chat/42"
    assert tokens["mfa"] is False
    who = await me(platform, tokens["access_token"])
    assert who["roles"] == ["member"]
    assert who["amr"] == ["fed"]
    assert who["tenant_id"] != admin.tenant  # an id, not the tenant's name


async def test_public_client_signs_in_with_pkce_alone(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(
        platform, admin, oidc_idp, config={"client_id": PUBLIC_CLIENT_ID, "client_secret": ""}
    )
    await map_group(platform, admin, idp_id, "staff", Role.MEMBER)
    response = await sign_in(platform, idp_id, new_account(oidc_idp, ["staff"]))
    assert response.status_code == 200, response.text


async def test_jit_off_refuses_an_unknown_user_and_on_creates_it(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    closed = await add_idp(platform, admin, oidc_idp, jit_provisioning=False)
    account = new_account(oidc_idp, ["staff"])

    refused = await sign_in(platform, closed, account)
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == PROBLEMS + "sso-refused"

    opened = await add_idp(platform, admin, oidc_idp, jit_provisioning=True, default_role="viewer")
    response = await sign_in(platform, opened, account)
    assert response.status_code == 200, response.text
    assert (await me(platform, response.json()["access_token"]))["roles"] == ["viewer"]


async def test_losing_a_group_at_the_next_login_takes_its_role_back(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp)
    await map_group(platform, admin, idp_id, "staff", Role.MEMBER)
    await map_group(platform, admin, idp_id, "auditors", Role.AUDITOR)
    account = new_account(oidc_idp, ["staff", "auditors"])

    first = await sign_in(platform, idp_id, account)
    assert (await me(platform, first.json()["access_token"]))["roles"] == ["auditor", "member"]

    oidc_idp.set_account(account, email=f"{account}@example.eu", groups=["staff"])
    second = await sign_in(platform, idp_id, account)
    assert second.status_code == 200, second.text
    assert (await me(platform, second.json()["access_token"]))["roles"] == ["member"]


async def test_admin_role_through_sso_needs_the_trusted_idps_mfa(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp, trust_idp_mfa=True)
    await map_group(platform, admin, idp_id, "it-admins", Role.ADMIN)
    account = new_account(oidc_idp, ["it-admins"], amr=["pwd"])

    password_only = (await sign_in(platform, idp_id, account)).json()
    assert password_only["mfa"] is False
    denied = await platform.client.get(
        "/api/v1/idps", headers=Platform.auth(password_only["access_token"])
    )
    assert denied.status_code == 403
    assert denied.json()["type"] == PROBLEMS + "mfa-required"

    oidc_idp.set_account(
        account, email=f"{account}@example.eu", groups=["it-admins"], amr=["pwd", "mfa"]
    )
    with_mfa = (await sign_in(platform, idp_id, account)).json()
    assert with_mfa["mfa"] is True
    allowed = await platform.client.get(
        "/api/v1/idps", headers=Platform.auth(with_mfa["access_token"])
    )
    assert allowed.status_code == 200, allowed.text


async def test_idp_mfa_does_not_count_unless_the_idp_is_trusted(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp, trust_idp_mfa=False)
    await map_group(platform, admin, idp_id, "it-admins", Role.ADMIN)
    account = new_account(oidc_idp, ["it-admins"], amr=["pwd", "mfa"])
    tokens = (await sign_in(platform, idp_id, account)).json()
    assert tokens["mfa"] is False
    denied = await platform.client.get(
        "/api/v1/idps", headers=Platform.auth(tokens["access_token"])
    )
    assert denied.status_code == 403
    assert denied.json()["type"] == PROBLEMS + "mfa-required"


# --- refusals through the callback ---------------------------------------------------------


async def test_a_replayed_state_is_refused(platform: Platform, oidc_idp: OidcIdp) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp, default_role="viewer")
    login = await start(platform, idp_id)
    callback = await authorize(login, new_account(oidc_idp, []), REDIRECT_PREFIX)

    binding = platform.client.cookies["obsigen_oidc_flow"]
    first = await platform.client.get(callback)
    assert first.status_code == 200, first.text
    # The replay comes with everything the first callback had, browser cookie included.
    platform.client.cookies.set("obsigen_oidc_flow", binding, path="/auth/oidc/")
    replay = await platform.client.get(callback)
    assert_refused(replay, "already used")


async def test_a_tampered_nonce_is_refused(platform: Platform, oidc_idp: OidcIdp) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp, default_role="viewer")
    login = urlsplit(await start(platform, idp_id))
    # Someone swaps the nonce on the way to the IdP: the IdP signs that nonce into the token.
    query = dict(parse_qsl(login.query))
    query["nonce"] = "a-nonce-this-sign-in-never-sent"
    swapped = urlunsplit(login._replace(query=urlencode(query)))
    callback = await authorize(swapped, new_account(oidc_idp, []), REDIRECT_PREFIX)

    assert_refused(await platform.client.get(callback), "nonce")


async def test_a_callback_in_another_browser_is_refused(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    """Login CSRF: a callback URL from the attacker's own sign-in, opened by a victim."""
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp, default_role="viewer")
    callback = await authorize(
        await start(platform, idp_id), new_account(oidc_idp, []), REDIRECT_PREFIX
    )
    platform.client.cookies.clear()
    assert_refused(await platform.client.get(callback), "another browser")


async def test_an_error_from_the_idp_is_a_clear_refusal(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp)
    state = dict(parse_qsl(urlsplit(await start(platform, idp_id)).query))["state"]
    response = await platform.client.get(
        f"/auth/oidc/{idp_id}/callback",
        params={"error": "access_denied", "error_description": "user said no", "state": state},
    )
    assert_refused(response, "access_denied: user said no")


async def test_a_state_of_another_idp_is_refused(platform: Platform, oidc_idp: OidcIdp) -> None:
    admin = await platform.login(role=Role.ADMIN)
    first = await add_idp(platform, admin, oidc_idp, default_role="viewer")
    second = await add_idp(platform, admin, oidc_idp, default_role="viewer")
    callback = await authorize(
        await start(platform, first), new_account(oidc_idp, []), REDIRECT_PREFIX
    )
    assert_refused(
        await platform.client.get(callback.replace(first, second)), "another identity provider"
    )


async def test_a_discovery_document_of_another_issuer_is_refused(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    # The same server under another name: its discovery document names the 127.0.0.1 issuer.
    other_name = oidc_idp.issuer.replace("127.0.0.1", "localhost")
    idp_id = await add_idp(platform, admin, oidc_idp, config={"issuer": other_name})
    response = await platform.client.get(f"/auth/oidc/{idp_id}/login")
    assert_refused(response, "names issuer")


async def test_refusals_are_audited(platform: Platform, oidc_idp: OidcIdp) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp)
    bogus = await platform.client.get(
        f"/auth/oidc/{idp_id}/callback", params={"code": "c", "state": "s" * 40}
    )
    assert_refused(bogus, "state")
    events = await platform.client.get(
        "/api/v1/audit/events",
        params={"type": "auth.sso", "outcome": "failure"},
        headers=Platform.auth(admin.token),
    )
    assert events.status_code == 200, events.text
    failures = events.json()["events"]
    assert any("state" in e["data"]["reason"] for e in failures), failures


async def test_return_to_must_be_a_local_path(platform: Platform, oidc_idp: OidcIdp) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = await platform.client.get(
            f"/auth/oidc/{idp_id}/login", params={"return_to": target}
        )
        assert response.status_code == 422, (target, response.text)


async def test_an_unknown_or_disabled_idp_is_not_found(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp, enabled=False)
    for path in (f"/auth/oidc/{idp_id}/login", f"/auth/oidc/{uuid.uuid4().hex}/callback"):
        response = await platform.client.get(path)
        assert response.status_code == 404, response.text


# --- key rollover ----------------------------------------------------------------------------


async def test_a_new_signing_key_is_fetched_once(
    platform: Platform, oidc_idp: OidcIdp, tmp_path: Path
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    with running_idp(tmp_path, REDIRECT_PREFIX, client_secret=oidc_idp.client_secret) as rolling:
        idp_id = await add_idp(platform, admin, rolling, default_role="viewer")
        account = new_account(rolling, [])
        assert (await sign_in(platform, idp_id, account)).status_code == 200
        assert rolling.jwks_hits() == 1

        rolling.restart(private_jwks("k2"))  # same issuer, new key id; the counter restarts
        rolled = await sign_in(platform, idp_id, account)
        assert rolled.status_code == 200, rolled.text
        assert rolling.jwks_hits() == 1  # the unknown kid made us look once

        again = await sign_in(platform, idp_id, account)
        assert again.status_code == 200, again.text
        assert rolling.jwks_hits() == 1  # and then the cache answers


async def test_an_unreachable_idp_is_a_502_problem(platform: Platform, oidc_idp: OidcIdp) -> None:
    admin = await platform.login(role=Role.ADMIN)
    closed = f"http://127.0.0.1:{free_port()}"
    idp_id = await add_idp(platform, admin, oidc_idp, config={"issuer": closed})
    response = await platform.client.get(f"/auth/oidc/{idp_id}/login")
    assert response.status_code == 502, response.text
    assert response.json()["type"] == PROBLEMS + "idp-unreachable"
