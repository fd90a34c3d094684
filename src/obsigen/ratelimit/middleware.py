"""Request limits and token budgets at the web edge.

Limits are applied after authentication, because their keys name the caller: each request
counts against its tenant, its principal, and its principal's allowance for the endpoint (the
route template, so ``/v1/conversations/{id}`` is one endpoint). Before authentication (login,
refresh, health) the client address stands in for the principal. All scopes of a request are
decided in one atomic step (:mod:`obsigen.ratelimit.gcra`).

Allowed responses carry the draft-IETF ``RateLimit-Limit``, ``RateLimit-Remaining``,
``RateLimit-Reset`` and ``RateLimit-Policy`` headers of the binding scope, added by
:class:`RateLimitHeaders` (a dependency cannot add headers to a Response a route returns);
refusals are 429 problems with ``Retry-After`` as well.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from redis.asyncio import Redis
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obsigen.authz.principal import Principal
from obsigen.config import RateLimitSettings
from obsigen.metrics import RATE_LIMIT_REJECTIONS, rate_limit_scope
from obsigen.ratelimit.budget import MemoryTokenBudget, RedisTokenBudget, Reservation, TokenBudget
from obsigen.ratelimit.errors import TokenBudgetExceeded, whole_seconds
from obsigen.ratelimit.gcra import (
    Decision,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    StoreDownPolicy,
)
from obsigen.ratelimit.rates import Rate, parse_optional_rate

# In the request's state (shared with the ASGI scope, so the header middleware sees it).
DECISION_STATE = "obsigen_ratelimit_decision"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def principal_id(principal: Principal) -> str:
    return f"{principal.kind}:{principal.id}"


@dataclass(slots=True)
class RateLimits:
    """The limiter, the token budget and the parsed settings: one per server process."""

    settings: RateLimitSettings
    limiter: RateLimiter
    budget: TokenBudget
    default: Rate | None = field(init=False)
    principal: Rate | None = field(init=False)
    tenant: Rate | None = field(init=False)
    endpoints: dict[str, Rate | None] = field(init=False)

    def __post_init__(self) -> None:
        self.default = parse_optional_rate(self.settings.default)
        self.principal = parse_optional_rate(self.settings.principal)
        self.tenant = parse_optional_rate(self.settings.tenant)
        self.endpoints = {k: parse_optional_rate(v) for k, v in self.settings.endpoints.items()}

    def endpoint_rate(self, method: str, template: str) -> Rate | None:
        for name in (f"{method} {template}", template):
            if name in self.endpoints:
                return self.endpoints[name]
        return self.default

    def policy_for(self, method: str) -> StoreDownPolicy:
        if method.upper() in READ_METHODS and self.settings.reads_on_store_down is not None:
            return self.settings.reads_on_store_down
        return self.settings.on_store_down

    def limits_for(
        self, method: str, template: str, principal: Principal | None, client: str | None
    ) -> list[Limit]:
        # Every key of one caller shares a hash tag, so one script can touch them all in a
        # Redis Cluster too.
        method = method.upper()
        endpoint = self.endpoint_rate(method, template)
        if principal is None:
            scopes = [(f"{{ip:{client or 'unknown'}}}:e:{method}:{template}", endpoint)]
        else:
            tag = f"{{t:{principal.tenant_id}}}"
            who = principal_id(principal)
            scopes = [
                (f"{tag}:tenant", self.tenant),
                (f"{tag}:p:{who}", self.principal),
                (f"{tag}:e:{method}:{template}:p:{who}", endpoint),
            ]
        return [Limit(key, rate) for key, rate in scopes if rate is not None]

    async def check(
        self, method: str, template: str, principal: Principal | None, client: str | None
    ) -> Decision | None:
        """The decision for one request (None: no limit applies). Does not raise on refusal."""
        limits = self.limits_for(method, template, principal, client)
        if not limits:
            return None
        return await self.limiter.decide(limits, on_store_down=self.policy_for(method))


def build_rate_limits(
    settings: RateLimitSettings, redis: Redis | None, *, prefix: str = "obsigen:"
) -> RateLimits:
    """Redis-backed when the platform has Redis (exact across processes), else in memory.

    ``prefix`` namespaces the keys: tests that share a Redis give each platform its own.
    """
    tenant_budget = parse_optional_rate(settings.token_budget_tenant)
    user_budget = parse_optional_rate(settings.token_budget_user)
    limiter: RateLimiter
    budget: TokenBudget
    if redis is not None:
        limiter = RedisRateLimiter(
            redis, prefix=prefix + "rl:", on_store_down=settings.on_store_down
        )
        budget = RedisTokenBudget(
            redis,
            tenant_budget,
            user_budget,
            prefix=prefix + "tb:",
            on_store_down=settings.on_store_down,
        )
    else:
        limiter = MemoryRateLimiter()
        budget = MemoryTokenBudget(tenant_budget, user_budget)
    return RateLimits(settings=settings, limiter=limiter, budget=budget)


def decision_headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(whole_seconds(decision.reset_after_s)),
        "RateLimit-Policy": f"{decision.limit};w={decision.period_s}",
    }


class RateLimitHeaders:
    """Adds the ``RateLimit-*`` headers of the request's decision to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Created here so that the Request objects below share this very dict with us.
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = state.get(DECISION_STATE)
                if isinstance(decision, Decision) and not decision.degraded:
                    headers = MutableHeaders(scope=message)
                    for name, value in decision_headers(decision).items():
                        if name not in headers:
                            headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_rate_limits(app: FastAPI, rate_limits: RateLimits | None = None) -> None:
    """Add the header middleware; ``rate_limits`` may also be set later on ``app.state``."""
    app.add_middleware(RateLimitHeaders)
    if rate_limits is not None:
        app.state.rate_limits = rate_limits


def rate_limits_of(request: Request) -> RateLimits | None:
    limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    return limits


def endpoint_of(request: Request) -> str:
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else request.url.path


async def enforce_rate_limits(request: Request, principal: Principal | None) -> Decision | None:
    """Count this request against its limits once; raise RateLimited (429) when refused.

    Raises StoreUnavailable (503) when Redis is unreachable and the policy for the method is
    "closed". A no-op where the app has no ``rate_limits``.
    """
    limits = rate_limits_of(request)
    if limits is None:
        return None
    state = request.scope.setdefault("state", {})
    if DECISION_STATE in state:
        decision: Decision | None = state[DECISION_STATE]
        return decision
    client = request.client.host if request.client else None
    decision = await limits.check(request.method, endpoint_of(request), principal, client)
    state[DECISION_STATE] = decision
    if decision is not None and not decision.allowed:
        RATE_LIMIT_REJECTIONS.labels("request", rate_limit_scope(decision.key)).inc()
        raise decision.refusal()
    return decision


def estimate_tokens(texts: Iterable[str], max_tokens: int) -> int:
    """A generous estimate of a call's tokens: the prompt at ~3 UTF-8 bytes per token (BPE
    vocabularies average more; non-Latin scripts less), 4 per message, plus the completion's
    ``max_tokens``. Over-estimating only holds budget until :func:`settle_tokens`."""
    prompt = sum(math.ceil(len(text.encode()) / 3) + 4 for text in texts)
    return prompt + max(0, max_tokens)


async def reserve_tokens(
    request: Request, principal: Principal, estimated_tokens: int
) -> Reservation:
    """Hold tokens against the tenant's and the principal's budgets before a model call.

    Raises TokenBudgetExceeded (429 ``token-budget-exceeded``) when either has no room.
    """
    limits = rate_limits_of(request)
    if limits is None:
        return Reservation(tokens=estimated_tokens)
    try:
        return await limits.budget.reserve(
            principal.tenant_id,
            principal_id(principal),
            estimated_tokens,
            on_store_down=limits.policy_for(request.method),
        )
    except TokenBudgetExceeded:
        RATE_LIMIT_REJECTIONS.labels("token_budget", "budget").inc()
        raise


async def settle_tokens(request: Request, reservation: Reservation, actual_tokens: int) -> None:
    limits = rate_limits_of(request)
    if limits is not None:
        await limits.budget.settle(reservation, actual_tokens)


async def release_tokens(request: Request, reservation: Reservation) -> None:
    limits = rate_limits_of(request)
    if limits is not None:
        await limits.budget.release(reservation)
