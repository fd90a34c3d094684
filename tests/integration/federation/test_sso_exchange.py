"""The browser hand-off of an SSO sign-in: the callback (OIDC, against the real oidc-provider)
and the ACS (SAML, the pysaml2 IdP) redirect a browser to /ui/sso/complete with a one-time
code in the fragment, and ``POST /auth/sso/exchange`` trades it for the tokens once: not
twice, not late, not for another tenant, not in another browser, not a made-up code."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.conftest import Platform
from tests.integration.federation.conftest import REDIRECT_PREFIX
from tests.integration.federation.oidc_idp import OidcIdp, authorize
from tests.integration.federation.saml_idp import (
    SamlKeys,
    TestIdp,
    encode,
    register_idp,
    saml_keys,
)
from tests.integration.federation.test_oidc_flow import add_idp, map_group, me, new_account, start

from obsigen.authz.permissions import Role
from obsigen.federation import sso_codes
from obsigen.federation.sso_codes import CODE_TTL_S, code_key
from obsigen.web.sso import HANDOFF_COOKIE

__all__ = ["saml_keys"]

PROBLEMS = "https://obsigen.dev/problems/"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def browser_sign_in(
    platform: Platform, oidc_idp: OidcIdp, *, return_to: str = "/ui/admin"
) -> tuple[str, dict[str, str], httpx.Response]:
    """An OIDC sign-in as a browser: (tenant, fragment parameters, the callback's answer)."""
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp)
    await map_group(platform, admin, idp_id, "staff", Role.MEMBER)
    account = new_account(oidc_idp, ["staff"])
    callback = await authorize(
        await start(platform, idp_id, f"?return_to={return_to}"), account, REDIRECT_PREFIX
    )
    response = await platform.client.get(callback, headers=BROWSER)
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/ui/sso/complete"
    fragment = {k: v[0] for k, v in parse_qs(location.fragment).items()}
    return admin.tenant, fragment, response


async def exchange(
    platform: Platform, code: str, tenant: str, binding: str | None = None
) -> httpx.Response:
    """POST the code; with ``binding`` the browser cookie is sent as given (a successful
    exchange deletes it from the client's jar, and a replay must not fail for that alone)."""
    headers = {"Cookie": f"{HANDOFF_COOKIE}={binding}"} if binding is not None else None
    return await platform.client.post(
        "/auth/sso/exchange", json={"code": code, "tenant": tenant}, headers=headers
    )


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEMS + "sso-code-invalid"


async def test_a_browser_is_redirected_and_trades_the_code_once(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    tenant, fragment, response = await browser_sign_in(platform, oidc_idp)

    # Only the code and the tenant name travel, and only in the fragment.
    assert set(fragment) == {"code", "tenant"}
    assert fragment["tenant"] == tenant
    assert "?" not in response.headers["location"]
    assert "token" not in response.headers["location"].lower()
    assert response.content == b""
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(HANDOFF_COOKIE)
    )
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/auth/sso/exchange" in lowered
    assert f"max-age={CODE_TTL_S}" in lowered
    # The code lives at most a minute, under its digest.
    ttl = await platform.services.auth.ephemeral.ttl(code_key(fragment["code"]))
    assert ttl is not None
    assert 0 < ttl <= CODE_TTL_S

    binding = platform.client.cookies.get(HANDOFF_COOKIE)
    assert binding

    first = await exchange(platform, fragment["code"], tenant, binding)

    assert first.status_code == 200, first.text
    tokens = first.json()
    assert tokens["refresh_token"]
    assert tokens["return_to"] == "/ui/admin"
    who = await me(platform, tokens["access_token"])
    assert who["roles"] == ["member"]
    assert who["amr"] == ["fed"]
    # The answer told the browser to drop the cookie; a replay with it anyway is refused.
    assert platform.client.cookies.get(HANDOFF_COOKIE) is None
    assert_refused(await exchange(platform, fragment["code"], tenant, binding))


async def test_api_clients_still_get_json(platform: Platform, oidc_idp: OidcIdp) -> None:
    admin = await platform.login(role=Role.ADMIN)
    idp_id = await add_idp(platform, admin, oidc_idp)
    account = new_account(oidc_idp, [])
    callback = await authorize(await start(platform, idp_id), account, REDIRECT_PREFIX)

    response = await platform.client.get(callback, headers={"Accept": "application/json"})

    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


async def test_a_code_for_another_tenant_is_refused_and_spent(
    platform: Platform, oidc_idp: OidcIdp
) -> None:
    tenant, fragment, _ = await browser_sign_in(platform, oidc_idp)
    binding = platform.client.cookies.get(HANDOFF_COOKIE)
    other = await platform.tenant()

    assert_refused(await exchange(platform, fragment["code"], other))
    assert_refused(await exchange(platform, fragment["code"], "no-such-tenant"))
    # The attempt spent it: not even its own tenant, in its own browser, can use it now.
    assert_refused(await exchange(platform, fragment["code"], tenant, binding))


async def test_an_expired_code_is_refused(
    platform: Platform, oidc_idp: OidcIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, fragment, _ = await browser_sign_in(platform, oidc_idp)
    now = sso_codes._now()
    monkeypatch.setattr(sso_codes, "_now", lambda: now + CODE_TTL_S + 1)

    assert_refused(await exchange(platform, fragment["code"], tenant))


@pytest.mark.parametrize(
    "code",
    ["made-up", "A" * 43, secrets.token_urlsafe(32), "%00" * 10, "../../etc/passwd"],
    ids=["short", "well-formed", "random", "escapes", "path"],
)
async def test_a_wrong_code_is_refused(platform: Platform, code: str) -> None:
    tenant = await platform.tenant()

    assert_refused(await exchange(platform, code, tenant))


@pytest.mark.parametrize("cookie", [None, "another-browsers-value"], ids=["none", "other"])
async def test_a_code_taken_to_another_browser_is_refused(
    platform: Platform, oidc_idp: OidcIdp, cookie: str | None
) -> None:
    """Login CSRF: an attacker who finished their own sign-in cannot plant its code in a
    victim's browser, which lacks the cookie the redirect set."""
    tenant, fragment, _ = await browser_sign_in(platform, oidc_idp)
    platform.client.cookies.clear()

    assert_refused(await exchange(platform, fragment["code"], tenant, cookie))


async def test_the_exchange_rejects_malformed_bodies(platform: Platform) -> None:
    for body in ({}, {"code": "x"}, {"code": "x", "tenant": "t", "extra": 1}, {"code": 5}):
        response = await platform.client.post("/auth/sso/exchange", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_saml_browser_sign_in_is_handed_off_too(
    platform: Platform, saml_keys: SamlKeys
) -> None:
    setup = await register_idp(platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256])
    request_id = await setup.start_login(relay_state="/ui/chat")
    posted = await platform.client.post(
        f"/auth/saml/{setup.idp_id}/acs",
        data={"SAMLResponse": encode(setup.response(request_id))},
        headers=BROWSER,
    )

    assert posted.status_code == 303, posted.text
    fragment: dict[str, Any] = parse_qs(urlsplit(posted.headers["location"]).fragment)
    tokens = await exchange(platform, fragment["code"][0], setup.admin.tenant)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["return_to"] == "/ui/chat"
    assert "fed" in (await me(platform, tokens.json()["access_token"]))["amr"]
