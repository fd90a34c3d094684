"""The ID token validator, with tokens signed here by keys made for the test: each rule refuses
its attack, and a token that follows every rule passes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from obsigen.federation.oidc_errors import OidcRefused
from obsigen.federation.oidc_idtoken import IdTokenExpectations, verify_id_token
from obsigen.federation.oidc_metadata import SigningKey, select_key

ISSUER = "https://idp.example.eu"
CLIENT = "obsigen"
NONCE = "n-0123456789abcdef"
NOW = 1_800_000_000.0
EXPECT = IdTokenExpectations(issuer=ISSUER, client_id=CLIENT, nonce=NONCE, clock_skew_s=60)

RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
ED = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
KEYS: list[SigningKey] = [RSA, EC, ED]


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT,
        "exp": int(NOW) + 300,
        "iat": int(NOW) - 5,
        "nonce": NONCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, Any], key: Any = RSA, alg: str = "RS256", kid: str | None = None
) -> str:
    header = {"alg": alg, "kid": kid if kid is not None else key.kid}
    return jws.serialize_compact(header, json.dumps(payload).encode(), key, algorithms=[alg])


async def key_for(kid: str | None, alg: str) -> SigningKey:
    key = select_key(KEYS, kid, alg)
    if key is None:
        raise OidcRefused(f"unknown key {kid!r}")
    return key


async def verify(token: str, expect: IdTokenExpectations = EXPECT) -> dict[str, Any]:
    return await verify_id_token(token, expect, key_for, NOW)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# joserfc warns when it signs with "EdDSA" (now "Ed25519"); IdPs still send it.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize(
    ("key", "alg"), [(RSA, "RS256"), (RSA, "PS256"), (EC, "ES256"), (ED, "EdDSA")]
)
async def test_a_valid_token_passes_with_each_asymmetric_algorithm(key: Any, alg: str) -> None:
    result = await verify(sign(claims(), key, alg))
    assert result["sub"] == "user-1"


async def test_several_audiences_pass_when_we_are_the_authorized_party() -> None:
    token = sign(claims(aud=[CLIENT, "api://other"], azp=CLIENT))
    assert (await verify(token))["azp"] == CLIENT


async def test_clock_skew_is_tolerated_within_its_bound() -> None:
    assert await verify(sign(claims(exp=int(NOW) - 30, iat=int(NOW) + 30)))


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (claims(exp=int(NOW) - 61), "expired"),
        (claims(iat=int(NOW) + 61), "future"),
        (claims(nbf=int(NOW) + 120), "not valid yet"),
        (claims(exp=None), "numeric exp"),
        (claims(iat=True), "numeric iat"),
        (claims(iss="https://evil.example.eu"), "another issuer"),
        (claims(iss=ISSUER + "/"), "another issuer"),
        (claims(aud="another-client"), "aud"),
        (claims(aud=["another-client", "third"]), "aud"),
        (claims(aud=[CLIENT, "api://other"]), "azp"),
        (claims(azp="another-client"), "azp"),
        (claims(nonce="another-nonce"), "nonce"),
        (claims(nonce=None), "nonce"),
        (claims(sub=None), "subject"),
        (claims(sub=""), "subject"),
    ],
)
async def test_claims_that_break_a_rule_are_refused(payload: dict[str, Any], words: str) -> None:
    with pytest.raises(OidcRefused, match=words):
        await verify(sign(payload))


async def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = sign(claims()).split(".")
    forged = f"{header}.{b64(claims(sub='admin'))}.{signature}"
    with pytest.raises(OidcRefused, match="signature"):
        await verify(forged)


async def test_a_signature_by_another_key_with_the_same_kid_is_refused() -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    with pytest.raises(OidcRefused, match="signature"):
        await verify(sign(claims(), impostor))


async def test_alg_none_is_refused() -> None:
    unsigned = f"{b64({'alg': 'none'})}.{b64(claims())}."
    with pytest.raises(OidcRefused, match="'none' is not accepted"):
        await verify(unsigned)


async def test_hmac_signed_tokens_are_refused() -> None:
    # Whoever knows the client secret could sign this; it must never vouch for an identity.
    secret = OctKey.generate_key(256, parameters={"kid": "rsa-1"})
    token = jws.serialize_compact(
        {"alg": "HS256", "kid": "rsa-1"},
        json.dumps(claims()).encode(),
        secret,
        algorithms=["HS256"],
    )
    with pytest.raises(OidcRefused, match="HS256"):
        await verify(token)


async def test_an_algorithm_that_does_not_fit_the_key_is_refused() -> None:
    # An RSA kid with an EC algorithm: the key lookup finds nothing that fits.
    with pytest.raises(OidcRefused, match="unknown key"):
        await verify(sign(claims(), EC, "ES256", kid="rsa-1"))


async def test_a_key_offered_in_the_header_is_not_used() -> None:
    attacker = RSAKey.generate_key(2048, parameters={"kid": "attacker"})
    header = {"alg": "RS256", "kid": "rsa-1", "jwk": attacker.as_dict(private=False)}
    token = jws.serialize_compact(
        header, json.dumps(claims()).encode(), attacker, algorithms=["RS256"]
    )
    with pytest.raises(OidcRefused):
        await verify(token)


async def test_critical_headers_are_refused() -> None:
    header = {"alg": "RS256", "kid": "rsa-1", "crit": ["kid"]}
    token = jws.serialize_compact(header, json.dumps(claims()).encode(), RSA, algorithms=["RS256"])
    with pytest.raises(OidcRefused, match="critical"):
        await verify(token)


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "a.b", "x" * 20_000])
async def test_garbage_is_refused(token: Any) -> None:
    with pytest.raises(OidcRefused):
        await verify(token)
