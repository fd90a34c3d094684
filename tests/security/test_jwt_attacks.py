"""Known JWT attacks against the token layer: every forged or misused token is refused with
the same generic InvalidToken, and a valid token is accepted.

Layout: the ``env`` fixture builds a TokenService over a SoftwareKeyProvider in tmp_path, on a
clock the tests set; ``Env.forge`` signs any header and claims with our real key, so a refusal
cannot be put down to a bad signature unless the case is about the signature. Add new cases as
functions taking ``env`` (HTTP-level cases live in test_jwt_attacks_http.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from obsigen.keys.software import SoftwareKeyProvider
from obsigen.tokens.access import INVALID_TOKEN_DETAIL, InvalidToken, TokenService
from obsigen.tokens.jws import P256_ORDER
from obsigen.tokens.keyring import KeyRing

ISSUER = "https://obsigen.test"
AUDIENCE = "obsigen-api"
TTL_S = 900
SKEW_S = 30
NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seg(value: Any) -> str:
    return b64(json.dumps(value).encode())


@dataclass
class Env:
    service: TokenService
    ring: KeyRing
    provider: SoftwareKeyProvider
    kid: str
    now: list[float]

    def header(self, **changes: Any) -> dict[str, Any]:
        return {"alg": "ES256", "typ": "at+jwt", "kid": self.kid, **changes}

    def claims(self, **changes: Any) -> dict[str, Any]:
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "tid": "tenant-a",
            "sid": "sess-1",
            "jti": b64(b"\x07" * 16),
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + TTL_S,
            "auth_time": NOW - 5,
            "sx": NOW + 8 * 3600,
            "amr": ["pwd"],
            "acr": "urn:obsigen:acr:pwd",
        }
        base.update(changes)
        return {name: value for name, value in base.items() if value is not None}

    async def forge(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """A token with a genuine signature of our key over whatever header and claims."""
        signing_input = f"{seg(header)}.{seg(claims)}"
        signature = await self.provider.sign(self.kid, signing_input.encode())
        return f"{signing_input}.{b64(signature)}"

    async def valid(self) -> str:
        token, _ = await self.service.issue(
            subject="user-1",
            tenant_id="tenant-a",
            session_id="sess-1",
            amr=["pwd"],
            auth_time=NOW - 5,
            session_expires_at=NOW + 8 * 3600,
        )
        return token

    async def public_pem(self) -> bytes:
        jwk = await self.provider.public_jwk(self.kid)
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(unb64(jwk["x"]), "big"),
            int.from_bytes(unb64(jwk["y"]), "big"),
            ec.SECP256R1(),
        )
        return numbers.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    provider = SoftwareKeyProvider(tmp_path / "keys")
    now = [float(NOW)]
    ring = KeyRing(provider, alg="ES256")
    service = TokenService(
        ring,
        issuer=ISSUER,
        audience=AUDIENCE,
        access_ttl_s=TTL_S,
        clock_skew_s=SKEW_S,
        clock=lambda: now[0],
    )
    kid = (await ring.ensure_signing_key()).kid
    yield Env(service, ring, provider, kid, now)
    await provider.aclose()


async def refused(env: Env, token: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        await env.service.verify(token)
    # One text for every refusal: nothing tells a prober which check it tripped.
    assert caught.value.detail == INVALID_TOKEN_DETAIL
    assert caught.value.status == 401


# --- the baseline --------------------------------------------------------------------------------


async def test_a_valid_token_is_accepted(env: Env) -> None:
    claims = await env.service.verify(await env.valid())
    assert (claims.subject, claims.tenant_id) == ("user-1", "tenant-a")


async def test_a_forged_baseline_is_accepted(env: Env) -> None:
    # Every case below changes one thing of this token; it is accepted as it stands.
    claims = await env.service.verify(await env.forge(env.header(), env.claims()))
    assert claims.session_id == "sess-1"


# --- algorithm -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("with_signature", [False, True])
async def test_alg_none(env: Env, alg: str, with_signature: bool) -> None:
    valid = await env.valid()
    _, body, signature = valid.split(".")
    head = seg(env.header(alg=alg))
    await refused(env, f"{head}.{body}.{signature if with_signature else ''}")


@pytest.mark.parametrize("secret_kind", ["pem", "jwk", "jwks"])
async def test_hs256_with_our_public_key_as_the_secret(env: Env, secret_kind: str) -> None:
    jwk = await env.provider.public_jwk(env.kid)
    secret = {
        "pem": await env.public_pem(),
        "jwk": json.dumps(jwk).encode(),
        "jwks": json.dumps(await env.ring.jwks()).encode(),
    }[secret_kind]
    signing_input = f"{seg(env.header(alg='HS256'))}.{seg(env.claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    await refused(env, f"{signing_input}.{b64(mac)}")


async def test_rs256_header_on_our_es256_key(env: Env) -> None:
    # Signed by our key for real, but the header claims the other algorithm.
    await refused(env, await env.forge(env.header(alg="RS256"), env.claims()))


# --- key selection -------------------------------------------------------------------------------


async def test_unknown_kid(env: Env) -> None:
    await refused(env, await env.forge(env.header(kid="sig-0123456789abcdef"), env.claims()))


@pytest.mark.parametrize("kid", ["../../keys/x", "' OR 1=1 --", "../index.json", "sig-1;rm"])
async def test_kid_injection(env: Env, kid: str) -> None:
    await refused(env, await env.forge(env.header(kid=kid), env.claims()))


def _attacker_jwk() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    return key, {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jwk", _attacker_jwk()[1]),
        ("jku", "https://attacker.test/jwks.json"),
        ("x5u", "https://attacker.test/cert.pem"),
        ("x5c", ["MIIBszCCAVmgAwIBAgIUY2VydA=="]),
        ("crit", ["exp"]),
    ],
)
async def test_key_carrying_headers_even_when_signed_by_our_key(
    env: Env, name: str, value: Any
) -> None:
    await refused(env, await env.forge(env.header(**{name: value}), env.claims()))


async def test_embedded_jwk_signed_by_the_attackers_key(env: Env) -> None:
    key, jwk = _attacker_jwk()
    signing_input = f"{seg(env.header(jwk=jwk))}.{seg(env.claims())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    await refused(env, f"{signing_input}.{b64(signature)}")


async def test_our_kid_signed_by_another_key(env: Env) -> None:
    key, _ = _attacker_jwk()
    signing_input = f"{seg(env.header())}.{seg(env.claims())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    await refused(env, f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")


# --- signature -----------------------------------------------------------------------------------


async def test_tampered_payload_with_the_old_signature(env: Env) -> None:
    head, _, signature = (await env.valid()).split(".")
    await refused(env, f"{head}.{seg(env.claims(sub='admin'))}.{signature}")


async def test_tampered_tenant_with_the_old_signature(env: Env) -> None:
    head, _, signature = (await env.valid()).split(".")
    await refused(env, f"{head}.{seg(env.claims(tid='tenant-b'))}.{signature}")


@pytest.mark.parametrize(
    "signature",
    [
        bytes(64),  # r = s = 0: CVE-2022-21449
        P256_ORDER.to_bytes(32, "big") * 2,  # r = s = n
        (P256_ORDER + 1).to_bytes(32, "big") * 2,
    ],
    ids=["r=s=0", "r=s=n", "r=s=n+1"],
)
async def test_psychic_ecdsa_signatures(env: Env, signature: bytes) -> None:
    signing_input = f"{seg(env.header())}.{seg(env.claims())}"
    await refused(env, f"{signing_input}.{b64(signature)}")


# --- claims --------------------------------------------------------------------------------------


async def test_expired(env: Env) -> None:
    token = await env.valid()
    env.now[0] = NOW + TTL_S + SKEW_S
    await refused(env, token)


async def test_expired_within_the_skew_is_still_accepted(env: Env) -> None:
    token = await env.valid()
    env.now[0] = NOW + TTL_S + SKEW_S - 1
    await env.service.verify(token)


async def test_not_yet_valid_beyond_the_skew(env: Env) -> None:
    later = NOW + SKEW_S + 1
    await refused(env, await env.forge(env.header(), env.claims(nbf=later, exp=NOW + 600)))


async def test_issued_in_the_future(env: Env) -> None:
    later = NOW + SKEW_S + 1
    claims = env.claims(iat=later, nbf=later, exp=later + 600)
    await refused(env, await env.forge(env.header(), claims))


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-api"},
        {"aud": ["another-api"]},
        {"aud": None},
        {"iss": "https://evil.test"},
        {"iss": None},
        {"jti": None},
        {"jti": "short"},
        {"exp": None},
        {"nbf": None},
        {"iat": None},
        {"exp": float(NOW + 600)},
        {"exp": True},
        {"sub": None},
        {"tid": None},
        {"tid": ""},
        {"sid": None},
        {"exp": NOW + 10 * TTL_S},  # a lifetime we never issue
        {"exp": NOW + 8 * 3600 + 1, "sx": NOW + 8 * 3600},  # past the session end
        {"acr": "urn:obsigen:acr:mfa"},  # claims a second factor amr does not show
        {"amr": "pwd"},
    ],
    ids=lambda changes: ",".join(f"{k}={v!r}" for k, v in changes.items()),
)
async def test_claims_are_required_and_checked(env: Env, changes: dict[str, Any]) -> None:
    # None removes the claim (Env.claims).
    await refused(env, await env.forge(env.header(), env.claims(**changes)))


async def test_an_access_token_from_a_service_with_another_audience(env: Env) -> None:
    other = TokenService(
        env.ring,
        issuer=ISSUER,
        audience="another-api",
        access_ttl_s=TTL_S,
        clock_skew_s=SKEW_S,
        clock=lambda: env.now[0],
    )
    token, _ = await other.issue(
        subject="user-1",
        tenant_id="tenant-a",
        session_id="sess-1",
        amr=["pwd"],
        auth_time=NOW,
        session_expires_at=NOW + 3600,
    )
    await refused(env, token)


async def test_a_jwt_of_another_type_signed_by_our_key(env: Env) -> None:
    # Same key, same claims, but not declared an access token (an ID token, an audit JWT).
    await refused(env, await env.forge(env.header(typ="JWT"), env.claims()))


async def test_oversized_and_garbage_tokens(env: Env) -> None:
    await refused(env, await env.forge(env.header(), env.claims(sub="u" * 9000)))
    await refused(env, "not-a-token")
    await refused(env, (await env.valid()) + ".extra")
