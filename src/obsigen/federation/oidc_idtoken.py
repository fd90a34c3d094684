"""Validation of an OIDC ID token (OpenID Connect Core §3.1.3.7), every rule a refusal.

The signature is checked first, with a key from the IdP's JWKS chosen by ``kid`` and ``alg``;
only asymmetric algorithms are accepted, so neither ``none`` nor an HMAC keyed with the (far
more widely known) client secret can vouch for an identity. Headers that point elsewhere for a
key (``jku``, ``x5u``, ``jwk``) are never followed. Then the claims: ``iss`` exactly, ``aud``
containing our client id, ``azp`` when present or when there are several audiences, ``exp`` and
``iat`` (not in the future) within the allowed clock skew, and the ``nonce`` this flow sent.
"""

from __future__ import annotations

import hmac
import json
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from obsigen.federation.oidc_errors import OidcRefused
from obsigen.federation.oidc_metadata import ALGORITHM_KEYS, SigningKey

MAX_TOKEN_CHARS = 16_384

KeyLookup = Callable[[str | None, str], Awaitable[SigningKey]]


@dataclass(frozen=True, slots=True)
class IdTokenExpectations:
    issuer: str
    client_id: str
    nonce: str
    clock_skew_s: float


def _header(token: str) -> dict[str, Any]:
    try:
        compact = jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, UnicodeError):
        raise OidcRefused("the ID token is not a compact JWS") from None
    return dict(compact.headers())


def _verify_signature(token: str, key: SigningKey, alg: str) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as superseded by "Ed25519" (RFC 9864); IdPs still use it.
            warnings.simplefilter("ignore")
            result = jws.deserialize_compact(token, key, algorithms=[alg])
    except (JoseError, ValueError):
        raise OidcRefused("the ID token's signature does not verify") from None
    try:
        claims = json.loads(result.payload)
    except ValueError:
        raise OidcRefused("the ID token's payload is not JSON") from None
    if not isinstance(claims, dict):
        raise OidcRefused("the ID token's payload is not a JSON object")
    return claims


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OidcRefused(f"the ID token has no numeric {name}")
    return float(value)


def check_claims(claims: dict[str, Any], expect: IdTokenExpectations, now: float) -> None:
    if claims.get("iss") != expect.issuer:
        raise OidcRefused("the ID token was issued by another issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or expect.client_id not in audiences:
        raise OidcRefused("the ID token is not for this client (aud)")
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != expect.client_id:
        raise OidcRefused("the ID token's authorized party (azp) is another client")
    skew = expect.clock_skew_s
    if now > _number(claims, "exp") + skew:
        raise OidcRefused("the ID token has expired")
    if _number(claims, "iat") > now + skew:
        raise OidcRefused("the ID token is issued in the future")
    if "nbf" in claims and _number(claims, "nbf") > now + skew:
        raise OidcRefused("the ID token is not valid yet")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), expect.nonce.encode()):
        raise OidcRefused("the ID token's nonce is not the one this sign-in sent")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 255:
        raise OidcRefused("the ID token has no usable subject")


async def verify_id_token(
    token: object, expect: IdTokenExpectations, key_for: KeyLookup, now: float
) -> dict[str, Any]:
    """The ID token's claims once everything above holds; OidcRefused otherwise."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise OidcRefused("the token endpoint returned no usable ID token")
    header = _header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHM_KEYS:
        raise OidcRefused(f"the ID token's algorithm {str(alg)[:20]!r} is not accepted")
    if "crit" in header:
        raise OidcRefused("the ID token declares critical header parameters we do not support")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise OidcRefused("the ID token's kid is not a string")
    key = await key_for(kid, alg)
    claims = _verify_signature(token, key, alg)
    check_claims(claims, expect, now)
    return claims
