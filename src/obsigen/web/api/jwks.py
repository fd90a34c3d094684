"""``GET /.well-known/jwks.json``: the public keys that verify our access tokens.

Active and verify-only signing keys (RFC 7517 JWK Set), public parts only. Public, so other
services can check our tokens offline. Cached by clients for five minutes: a key made by a
rotation signs at once, so a verifier that meets an unknown kid should fetch the set again
(PyJWKClient and most libraries do).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from obsigen.web.auth import public, services_of

router = APIRouter(tags=["keys"])

CACHE_CONTROL = "public, max-age=300"


@router.get("/.well-known/jwks.json", dependencies=[public()])
async def jwks(request: Request) -> JSONResponse:
    keys = await services_of(request).tokens.keyring.jwks()
    return JSONResponse(keys, headers={"Cache-Control": CACHE_CONTROL})
