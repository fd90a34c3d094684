"""Forged and misused access tokens sent to the running app: each refused, the valid one let in.

The token layer's own attack suite is tests/security/test_jwt_attacks.py; this one checks that
the web edge really uses it, and that a valid token of one tenant opens nothing of another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tests.conftest import LoggedIn, Platform

from obsigen.authz.permissions import Role


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, signature = token.split(".")
    return json.loads(unb64(head)), json.loads(unb64(body)), signature


def encode(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


def alg_none(token: str) -> str:
    header, payload, _ = parts(token)
    return encode({**header, "alg": "none"}, payload) + "."


def tampered_subject(token: str) -> str:
    header, payload, signature = parts(token)
    return encode(header, {**payload, "sub": "0" * 32}) + "." + signature


def foreign_key_same_kid(token: str) -> str:
    header, payload, _ = parts(token)
    key = ec.generate_private_key(ec.SECP256R1())
    signing_input = encode(header, payload)
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def hs256_with_public_jwk(jwks: dict[str, Any]) -> Callable[[str], str]:
    def forge(token: str) -> str:
        header, payload, _ = parts(token)
        secret = json.dumps(jwks["keys"][0]).encode()
        signing_input = encode({**header, "alg": "HS256"}, payload)
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64(mac)

    return forge


def psychic(token: str) -> str:
    header, payload, _ = parts(token)
    return encode(header, payload) + "." + b64(bytes(64))


def injected_jwk(token: str) -> str:
    header, payload, signature = parts(token)
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(key.x.to_bytes(32, "big")),
        "y": b64(key.y.to_bytes(32, "big")),
    }
    return encode({**header, "jwk": jwk}, payload) + "." + signature


ATTACKS: dict[str, Callable[[str], str]] = {
    "alg-none": alg_none,
    "tampered-payload-old-signature": tampered_subject,
    "foreign-key-with-our-kid": foreign_key_same_kid,
    "ecdsa-r-s-zero": psychic,
    "injected-jwk-header": injected_jwk,
    "truncated": lambda token: token.rsplit(".", 1)[0],
    "garbage": lambda token: "not.a.token",
}


@pytest.fixture
async def member(platform: Platform) -> LoggedIn:
    return await platform.login(role=Role.MEMBER)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_forged_tokens_are_refused(platform: Platform, member: LoggedIn, attack: str) -> None:
    forged = ATTACKS[attack](member.token)
    response = await platform.client.get("/v1/models", headers=platform.auth(forged))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    # The genuine token still works: the refusal is about the forgery.
    genuine = await platform.client.get("/v1/models", headers=platform.auth(member.token))
    assert genuine.status_code == 200


async def test_hs256_signed_with_our_public_key_is_refused(
    platform: Platform, member: LoggedIn
) -> None:
    jwks = (await platform.client.get("/.well-known/jwks.json")).json()
    forged = hs256_with_public_jwk(jwks)(member.token)
    response = await platform.client.get("/v1/models", headers=platform.auth(forged))
    assert response.status_code == 401


async def test_a_valid_token_of_tenant_a_opens_nothing_of_tenant_b(platform: Platform) -> None:
    alice = await platform.login(role=Role.MEMBER)
    bob = await platform.login(role=Role.MEMBER)
    created = await platform.client.post(
        "/api/v1/conversations", json={"title": "bob's"}, headers=platform.auth(bob.token)
    )
    assert created.status_code in (200, 201), created.text
    conversation_id = created.json()["id"]

    for method, path in [
        ("GET", f"/api/v1/conversations/{conversation_id}"),
        ("DELETE", f"/api/v1/conversations/{conversation_id}"),
    ]:
        response = await platform.client.request(method, path, headers=platform.auth(alice.token))
        assert response.status_code == 404, (method, path, response.status_code)
    mine = await platform.client.get(
        f"/api/v1/conversations/{conversation_id}", headers=platform.auth(bob.token)
    )
    assert mine.status_code == 200


async def test_a_token_of_an_ended_session_is_refused(platform: Platform, member: LoggedIn) -> None:
    await platform.client.post("/auth/logout", headers=platform.auth(member.token))
    response = await platform.client.get("/v1/models", headers=platform.auth(member.token))
    assert response.status_code == 401
