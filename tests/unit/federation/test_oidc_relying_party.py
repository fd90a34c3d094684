"""The relying party's flow against a scripted IdP that signs real tokens (httpx.MockTransport):
what ``finish`` checks beyond the ID token itself. The real-provider flow is in
tests/integration/federation/test_oidc_flow.py."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import RSAKey

from obsigen.config import FederationSettings
from obsigen.db.federation_models import IdentityProvider
from obsigen.ephemeral.memory import MemoryStore
from obsigen.federation.oidc import OidcRelyingParty
from obsigen.federation.oidc_errors import IdpUnreachable, OidcRefused

ISSUER = "https://idp.example.eu"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


class ScriptedIdp:
    """Answers discovery, JWKS, token and userinfo; tests change what it says."""

    def __init__(self) -> None:
        self.nonce = ""
        self.id_claims: dict[str, Any] = {}
        self.userinfo: dict[str, Any] = {"sub": "user-1", "email": "u@example.eu"}
        self.token_status = 200
        self.token_requests: list[httpx.Request] = []

    def id_token(self) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "user-1", "aud": "obsigen", "iat": now, "exp": now + 60}
        claims |= {"nonce": self.nonce, **self.id_claims}
        payload = json.dumps(claims).encode()
        return jws.serialize_compact({"alg": "RS256", "kid": "k1"}, payload, KEY)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/auth",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/jwks",
                    "userinfo_endpoint": f"{ISSUER}/me",
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [KEY.as_dict(private=False)]})
        if path == "/token":
            self.token_requests.append(request)
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"error": "invalid_grant"})
            return httpx.Response(
                200,
                json={"access_token": "at", "token_type": "Bearer", "id_token": self.id_token()},
            )
        if path == "/me":
            return httpx.Response(200, json=self.userinfo)
        return httpx.Response(404)


@pytest.fixture
def scripted() -> ScriptedIdp:
    return ScriptedIdp()


@pytest.fixture
def party(scripted: ScriptedIdp) -> OidcRelyingParty:
    settings = FederationSettings(public_url="https://obsigen.example.eu")
    return OidcRelyingParty(settings, MemoryStore(), transport=httpx.MockTransport(scripted))


def make_idp(secret: str = "") -> IdentityProvider:
    return IdentityProvider(
        id="a" * 32,
        tenant_id="t" * 32,
        slug="idp",
        protocol="oidc",
        display_name="IdP",
        domains=["example.eu"],
        config={"issuer": ISSUER, "client_id": "obsigen", "client_secret": secret},
    )


async def begin(
    party: OidcRelyingParty, scripted: ScriptedIdp, idp: IdentityProvider
) -> tuple[dict[str, str], str]:
    flow = await party.begin(idp)
    query = dict(parse_qsl(urlsplit(flow.authorization_url).query))
    scripted.nonce = query["nonce"]
    return {"code": "the-code", "state": query["state"], "iss": ISSUER}, flow.browser_binding


async def test_the_flow_sends_pkce_and_redeems_with_basic_auth(
    party: OidcRelyingParty, scripted: ScriptedIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OIDC_UNIT_SECRET", "s3cr:t/with spaces")
    idp = make_idp("env:OIDC_UNIT_SECRET")
    flow = await party.begin(idp, "/after")
    query = dict(parse_qsl(urlsplit(flow.authorization_url).query))
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"https://obsigen.example.eu/auth/oidc/{idp.id}/callback"
    scripted.nonce = query["nonce"]
    result = await party.finish(
        idp, {"code": "c", "state": query["state"], "iss": ISSUER}, flow.browser_binding
    )
    assert result.identity.subject == "user-1"
    assert result.return_to == "/after"
    sent = scripted.token_requests[0]
    form = dict(parse_qsl(sent.content.decode()))
    assert "client_id" not in form
    assert len(form["code_verifier"]) >= 43
    user, _, secret = (
        base64.b64decode(sent.headers["authorization"].split()[1]).decode().partition(":")
    )
    # RFC 6749 §2.3.1: form-urlencoded before Basic.
    assert (user, secret) == ("obsigen", "s3cr%3At%2Fwith%20spaces")


async def test_userinfo_about_another_subject_is_refused(
    party: OidcRelyingParty, scripted: ScriptedIdp
) -> None:
    idp = make_idp()
    params, binding = await begin(party, scripted, idp)
    scripted.userinfo = {"sub": "someone-else", "email": "boss@example.eu"}
    with pytest.raises(OidcRefused, match="userinfo"):
        await party.finish(idp, params, binding)


async def test_an_expired_id_token_is_refused_by_the_flow(
    party: OidcRelyingParty, scripted: ScriptedIdp
) -> None:
    idp = make_idp()
    params, binding = await begin(party, scripted, idp)
    scripted.id_claims = {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}
    with pytest.raises(OidcRefused, match="expired"):
        await party.finish(idp, params, binding)


async def test_an_authorization_response_naming_another_issuer_is_refused(
    party: OidcRelyingParty, scripted: ScriptedIdp
) -> None:
    idp = make_idp()
    params, binding = await begin(party, scripted, idp)
    with pytest.raises(OidcRefused, match="another issuer"):
        await party.finish(idp, {**params, "iss": "https://mix-up.example.eu"}, binding)
    assert scripted.token_requests == []


async def test_a_code_the_idp_refuses_is_a_refusal(
    party: OidcRelyingParty, scripted: ScriptedIdp
) -> None:
    idp = make_idp()
    params, binding = await begin(party, scripted, idp)
    scripted.token_status = 400
    with pytest.raises(OidcRefused, match="invalid_grant"):
        await party.finish(idp, params, binding)


async def test_a_missing_client_secret_is_reported_without_its_reference_value(
    party: OidcRelyingParty, scripted: ScriptedIdp
) -> None:
    idp = make_idp("env:OIDC_UNIT_SECRET_THAT_IS_NOT_SET")
    params, binding = await begin(party, scripted, idp)
    with pytest.raises(IdpUnreachable, match="client secret"):
        await party.finish(idp, params, binding)


async def test_a_flow_is_spent_by_its_first_callback(
    party: OidcRelyingParty, scripted: ScriptedIdp
) -> None:
    idp = make_idp()
    params, binding = await begin(party, scripted, idp)
    with pytest.raises(OidcRefused, match="another browser"):
        await party.finish(idp, params, "not-the-binding")
    # Even a refused callback spends the state: a guessing attacker gets one try per flow.
    with pytest.raises(OidcRefused, match="already used"):
        await party.finish(idp, params, binding)
