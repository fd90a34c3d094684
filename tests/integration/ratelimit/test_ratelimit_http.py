"""The limits at the web edge, wired as docs/ratelimit.md says: enforced right after the
caller is known, RateLimit-* headers on answers, 429/503 problems, budgets before the model."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from tests.conftest import REDIS_URL, port_open, require_service

from obsigen.authz.principal import Principal
from obsigen.config import RateLimitSettings
from obsigen.ratelimit.middleware import (
    RateLimits,
    build_rate_limits,
    enforce_rate_limits,
    estimate_tokens,
    install_rate_limits,
    release_tokens,
    reserve_tokens,
    settle_tokens,
)
from obsigen.web.problems import MEDIA_TYPE, PROBLEM_BASE, install_problem_handlers

Client = Callable[[RateLimitSettings], Awaitable[tuple[httpx.AsyncClient, list[int]]]]


def _app(rate_limits: RateLimits, model_calls: list[int]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_rate_limits(app, rate_limits)

    async def model(body: dict[str, Any], estimate: int) -> int:
        model_calls.append(estimate)
        if body.get("fail"):
            raise RuntimeError("the model failed")
        uses: int = body["uses"]
        return uses

    async def caller(request: Request) -> Principal:
        # Stands in for web.auth.authenticate, with the one line the wiring adds to it.
        tenant, _, who = request.headers["x-caller"].partition("/")
        principal = Principal(tenant_id=tenant, kind="apikey", id=who, roles=frozenset())
        request.state.principal = principal
        await enforce_rate_limits(request, principal)
        return principal

    async def anonymous(request: Request) -> None:
        # Stands in for web.auth.public(): limited per client address.
        await enforce_rate_limits(request, None)

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str, principal: Principal = Depends(caller)) -> dict[str, str]:
        return {"thing": thing_id}

    @app.post("/v1/chat/completions")
    async def chat(
        body: dict[str, Any], request: Request, principal: Principal = Depends(caller)
    ) -> JSONResponse:
        estimate = estimate_tokens([body["prompt"]], body["max_tokens"])
        reservation = await reserve_tokens(request, principal, estimate)
        try:
            used = await model(body, estimate)
        except RuntimeError:
            await release_tokens(request, reservation)
            return JSONResponse({"error": "failed"}, status_code=502)
        await settle_tokens(request, reservation, used)
        # A route that returns its own Response: the headers must still be added.
        return JSONResponse({"usage": used})

    @app.post("/auth/login")
    async def login(_: None = Depends(anonymous)) -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "redis":
        require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    return name


@pytest.fixture
async def client_for(backend: str) -> AsyncIterator[Client]:
    """Builds the test app over the in-memory store, or over Redis with the test's prefix."""
    redis = Redis.from_url(REDIS_URL) if backend == "redis" else None
    prefix = f"test:rl:{uuid.uuid4().hex[:12]}:"
    opened: list[httpx.AsyncClient] = []

    async def make(settings: RateLimitSettings) -> tuple[httpx.AsyncClient, list[int]]:
        limits = build_rate_limits(settings, redis, prefix=prefix)
        calls: list[int] = []
        transport = httpx.ASGITransport(app=_app(limits, calls), client=("10.1.1.1", 4000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        opened.append(client)
        return client, calls

    try:
        yield make
    finally:
        for client in opened:
            await client.aclose()
        if redis is not None:
            keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()


def who(tenant: str, principal: str) -> dict[str, str]:
    return {"x-caller": f"{tenant}/{principal}"}


async def test_allowed_answers_carry_ratelimit_headers(client_for: Client) -> None:
    client, _ = await client_for(RateLimitSettings(default="5/minute"))
    response = await client.get("/v1/things/1", headers=who("a", "k1"))
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == "5"
    assert response.headers["RateLimit-Remaining"] == "4"
    assert response.headers["RateLimit-Reset"] == "12"
    assert response.headers["RateLimit-Policy"] == "5;w=60"
    chat = await client.post(
        "/v1/chat/completions",
        json={"prompt": "hi", "max_tokens": 10, "uses": 5},
        headers=who("a", "k1"),
    )
    assert chat.status_code == 200
    # The endpoint is a scope of its own: its own allowance, not the one of /v1/things.
    assert chat.headers["RateLimit-Remaining"] == "4"


async def test_refusal_is_a_problem_with_retry_after(client_for: Client) -> None:
    client, _ = await client_for(RateLimitSettings(default="2/minute"))
    for _ in range(2):
        assert (await client.get("/v1/things/{x}", headers=who("a", "k1"))).status_code == 200
    refused = await client.get("/v1/things/other", headers=who("a", "k1"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == MEDIA_TYPE
    body = refused.json()
    assert body["type"] == PROBLEM_BASE + "rate-limited"
    assert body["status"] == 429
    assert refused.headers["Retry-After"] == "30"
    assert refused.headers["RateLimit-Limit"] == "2"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == "60"


async def test_tenants_and_principals_are_limited_independently(client_for: Client) -> None:
    client, _ = await client_for(
        RateLimitSettings(default="100/minute", principal="2/minute", tenant="3/minute")
    )

    async def status(tenant: str, principal: str) -> int:
        return (await client.get("/v1/things/1", headers=who(tenant, principal))).status_code

    assert [await status("a", "k1") for _ in range(3)] == [200, 200, 429]  # principal limit
    assert await status("a", "k2") == 200  # same tenant, another principal: room left
    assert await status("a", "k3") == 429  # tenant A's 3 are spent ...
    assert [await status("b", "k1") for _ in range(2)] == [200, 200]  # ... B's are not


async def test_unauthenticated_endpoints_are_limited_per_client_address(
    client_for: Client,
) -> None:
    client, _ = await client_for(RateLimitSettings(endpoints={"POST /auth/login": "2/hour"}))
    statuses = [(await client.post("/auth/login")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_token_budget_refuses_before_the_model_call(client_for: Client) -> None:
    client, model_calls = await client_for(
        RateLimitSettings(token_budget_tenant="100000/day", token_budget_user="1000/day")
    )
    ok = await client.post(
        "/v1/chat/completions",
        json={"prompt": "x" * 30, "max_tokens": 600, "uses": 100},
        headers=who("a", "k1"),
    )
    assert ok.status_code == 200
    # 614 were held, 100 used: the refund leaves 900, so a second 614 fits ...
    again = await client.post(
        "/v1/chat/completions",
        json={"prompt": "x" * 30, "max_tokens": 600, "uses": 614},
        headers=who("a", "k1"),
    )
    assert again.status_code == 200
    # ... and a third does not: refused before anything reaches the model.
    refused = await client.post(
        "/v1/chat/completions",
        json={"prompt": "x" * 30, "max_tokens": 600, "uses": 1},
        headers=who("a", "k1"),
    )
    assert refused.status_code == 429
    assert refused.headers["content-type"] == MEDIA_TYPE
    assert refused.json()["type"] == PROBLEM_BASE + "token-budget-exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(model_calls) == 2
    # Another user of the tenant has a budget of their own.
    other = await client.post(
        "/v1/chat/completions",
        json={"prompt": "x", "max_tokens": 600, "uses": 1},
        headers=who("a", "k2"),
    )
    assert other.status_code == 200


async def test_failed_call_releases_its_tokens(client_for: Client) -> None:
    client, _ = await client_for(RateLimitSettings(token_budget_user="700/day"))
    body = {"prompt": "", "max_tokens": 600, "uses": 0}
    failed = await client.post(
        "/v1/chat/completions", json={**body, "fail": True}, headers=who("a", "k1")
    )
    assert failed.status_code == 502
    assert (
        await client.post("/v1/chat/completions", json=body, headers=who("a", "k1"))
    ).status_code == 200


async def _dead_client(
    dead_redis: Redis, settings: RateLimitSettings
) -> tuple[httpx.AsyncClient, list[int]]:
    limits = build_rate_limits(settings, dead_redis)
    calls: list[int] = []
    transport = httpx.ASGITransport(app=_app(limits, calls), client=("10.1.1.1", 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver"), calls


async def test_store_down_fails_closed_with_503(dead_redis: Redis) -> None:
    client, calls = await _dead_client(dead_redis, RateLimitSettings(on_store_down="closed"))
    async with client:
        login = await client.post("/auth/login")
        assert login.status_code == 503
        assert login.headers["content-type"] == MEDIA_TYPE
        assert login.json()["type"] == PROBLEM_BASE + "store-unavailable"
        assert login.headers["Retry-After"] == "5"
        chat = await client.post(
            "/v1/chat/completions",
            json={"prompt": "hi", "max_tokens": 5, "uses": 1},
            headers=who("a", "k1"),
        )
        assert chat.status_code == 503
        assert calls == []
        read = await client.get("/v1/things/1", headers=who("a", "k1"))
        assert read.status_code == 503


async def test_reads_can_stay_open_while_writes_fail_closed(dead_redis: Redis) -> None:
    settings = RateLimitSettings(on_store_down="closed", reads_on_store_down="open")
    client, calls = await _dead_client(dead_redis, settings)
    async with client:
        read = await client.get("/v1/things/1", headers=who("a", "k1"))
        assert read.status_code == 200
        assert "RateLimit-Limit" not in read.headers  # no numbers we do not have
        chat = await client.post(
            "/v1/chat/completions",
            json={"prompt": "hi", "max_tokens": 5, "uses": 1},
            headers=who("a", "k1"),
        )
        assert chat.status_code == 503
        assert calls == []


async def test_store_down_open_lets_everything_through(dead_redis: Redis) -> None:
    client, calls = await _dead_client(dead_redis, RateLimitSettings(on_store_down="open"))
    async with client:
        chat = await client.post(
            "/v1/chat/completions",
            json={"prompt": "hi", "max_tokens": 5, "uses": 1},
            headers=who("a", "k1"),
        )
        assert chat.status_code == 200
        assert len(calls) == 1
