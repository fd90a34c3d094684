"""Tokens issued by our TokenService verify in PyJWT from nothing but our JWKS, for every key
provider on its real backend: files, a SoftHSM2 token (the private key stays on the token),
moto KMS on loopback. PyJWT checks signature, audience, issuer and times itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from tests.fakes.key_fixtures import hsm_token, kms_server
from tests.fakes.key_services import MotoServer, SoftHsmToken

from obsigen.keys import KeyProvider, SigningAlg, make_key_provider
from obsigen.tokens.access import TokenService
from obsigen.tokens.keyring import KeyRing

__all__ = ["hsm_token", "kms_server"]

ISSUER = "https://obsigen.test"
AUDIENCE = "obsigen-api"


@pytest.fixture(params=["software", "pkcs11", "awskms"])
async def provider(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyProvider]:
    uri = "software"
    if request.param == "pkcs11":
        token: SoftHsmToken = request.getfixturevalue("hsm_token")
        uri = token.uri
    elif request.param == "awskms":
        server: MotoServer = request.getfixturevalue("kms_server")
        server.reset()
        uri = server.uri
    made = make_key_provider(uri, tmp_path)
    yield made
    await made.aclose()


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_pyjwt_verifies_our_token_from_our_jwks_alone(
    provider: KeyProvider, alg: SigningAlg
) -> None:
    service = TokenService(
        KeyRing(provider, alg=alg),
        issuer=ISSUER,
        audience=AUDIENCE,
        access_ttl_s=900,
        clock_skew_s=30,
    )
    now = int(time.time())
    token, claims = await service.issue(
        subject="user-1",
        tenant_id="tenant-a",
        session_id="sess-1",
        amr=["pwd", "otp"],
        auth_time=now,
        session_expires_at=now + 3600,
    )
    jwks = await service.keyring.jwks()
    for key in jwks["keys"]:
        assert set(key) <= {"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"}

    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == alg
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    decoded = jwt.decode(
        token,
        key=key,
        algorithms=[alg],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
    )
    assert decoded["sub"] == "user-1"
    assert decoded["tid"] == "tenant-a"
    assert decoded["jti"] == claims.token_id
    assert decoded["acr"] == "urn:obsigen:acr:mfa"

    # The same check with the wrong audience fails: PyJWT really checked it.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key=key, algorithms=[alg], audience="another-api", issuer=ISSUER)
    # And our own verifier accepts it, from cached public keys.
    assert await service.verify(token) == claims
