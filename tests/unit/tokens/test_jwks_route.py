"""GET /.well-known/jwks.json on a bare FastAPI app: public, cacheable, public key parts only,
and the keys it lists verify the tokens we issue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import httpx
import jwt
from fastapi import FastAPI
from token_testkit import Clocks

from obsigen.keys.interfaces import KeyState
from obsigen.keys.rotation import rotate
from obsigen.keys.software import SoftwareKeyProvider
from obsigen.tokens.access import TokenService
from obsigen.tokens.keyring import KeyRing
from obsigen.web.api import jwks as jwks_api

RingFactory = Callable[..., KeyRing]
ServiceFactory = Callable[..., TokenService]
PATH = "/.well-known/jwks.json"


def app_for(service: TokenService) -> FastAPI:
    app = FastAPI()
    app.include_router(jwks_api.router)
    app.state.services = SimpleNamespace(tokens=service)
    return app


async def get_jwks(service: TokenService) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_for(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(PATH)  # no Authorization header


def test_route_is_declared_public() -> None:
    (route,) = [r for r in jwks_api.router.routes if getattr(r, "path", "") == PATH]
    markers = [getattr(dep.dependency, "obsigen_public", False) for dep in route.dependencies]  # type: ignore[attr-defined]
    assert markers == [True]


async def test_jwks_is_served_without_credentials_and_cacheable(
    make_ring: RingFactory,
    make_service: ServiceFactory,
    software: SoftwareKeyProvider,
    clocks: Clocks,
) -> None:
    ring = make_ring()
    service = make_service(ring)
    first = await ring.ensure_signing_key()
    clocks.wall += 1
    second = (
        await rotate(software, "signing", overlap=timedelta(minutes=15), now=clocks.now())
    ).created
    clocks.wall += 1
    third = (
        await rotate(software, "signing", overlap=timedelta(minutes=15), now=clocks.now())
    ).created
    await software.set_state(first.kid, KeyState.RETIRED)
    await ring.refresh()

    response = await get_jwks(service)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert [key["kid"] for key in body["keys"]] == [second.kid, third.kid]
    for key in body["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & key.keys()


async def test_the_served_set_verifies_an_issued_token(
    make_ring: RingFactory, make_service: ServiceFactory, clocks: Clocks
) -> None:
    service = make_service(make_ring("RS256"))
    token, _ = await service.issue(
        subject="u1",
        tenant_id="t1",
        session_id="s1",
        amr=["pwd"],
        auth_time=int(clocks.wall),
        session_expires_at=int(clocks.wall) + 3600,
    )
    served = (await get_jwks(service)).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(served)[kid]
    claims = jwt.decode(
        token,
        key=key,
        algorithms=["RS256"],
        audience=service.audience,
        issuer=service.issuer,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["sub"] == "u1"
