"""``GET /metrics`` for Prometheus, and the HTTP metrics of every request (docs/metrics.md).

Off unless ``[metrics] enabled``. The endpoint is for the operator's scraper, not for tenants:
the peer must be in ``metrics.allow_from`` (loopback by default) and, with
``metrics.bearer_token`` set, send that token. The peer is ``scope["client"]`` as the edge
left it: :class:`obsigen.web.proxies.ProxyHeaders` replaces it by an X-Forwarded-For entry
only for requests from ``server.trusted_proxies``, so a header cannot claim loopback.

It is not rate-limited: the limiter's store (Redis) being down is exactly when the scraper
must still get through, and the guard above already bounds who can ask.

Requests are counted by route *template* (``/api/v1/conversations/{conversation_id}``):
the raw path holds ids, which are tenant data. Paths that match no route count as
``unmatched``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obsigen.assistant.turn import InputBlocked, TurnEvent, TurnFinished
from obsigen.config import MetricsSettings, Settings
from obsigen.errors import Forbidden, ObsigenError, Unauthenticated
from obsigen.metrics import (
    CHAT_TURNS,
    HTTP_DURATION,
    HTTP_REQUESTS,
    UNMATCHED_ROUTE,
    method_label,
    status_class,
)
from obsigen.secretref import resolve_secret
from obsigen.web.proxies import IPNetwork, parse_address

METRICS_PATH = "/metrics"
# Shortest bearer token accepted: the endpoint is not rate-limited, so the token must not be
# guessable (docs/metrics.md suggests 32 random bytes).
MIN_TOKEN_CHARS = 24
_EXPOSITION_TYPES = ("text/plain", "application/openmetrics-text")


class HttpMetrics:
    """ASGI middleware: counts and times each HTTP request by route template.

    Sits inside the edge (proxy headers, security headers, CORS), so CORS preflights the edge
    answers itself are not counted. An exception that escapes counts as 5xx: the server-error
    handler outside answers it with 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            status = status or 500
            raise
        finally:
            # The router put the matched route into this very scope dict.
            template = getattr(scope.get("route"), "path", None)
            route = template if isinstance(template, str) else UNMATCHED_ROUTE
            method = method_label(scope.get("method", ""))
            HTTP_REQUESTS.labels(route, method, status_class(status)).inc()
            HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)


_TURN_OUTCOMES = {
    InputBlocked.type_slug: "blocked",
    "output-blocked": "output_blocked",
    "inference-timeout": "upstream_timeout",
    "inference-failed": "upstream_error",
}


def turn_outcome(exc: BaseException) -> str:
    if isinstance(exc, ObsigenError):
        outcome = _TURN_OUTCOMES.get(exc.type_slug)
        if outcome is not None:
            return outcome
        return "rejected" if exc.status < 500 else "error"
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    return "error"


async def counted_turn(events: AsyncIterator[TurnEvent]) -> AsyncIterator[TurnEvent]:
    """``run_turn``'s events passed through, and the turn's end counted once by outcome.

    A turn is completed when it produced its TurnFinished (the answer is stored); a consumer
    that stops before that (client gone) counts as cancelled.
    """
    finished = False
    try:
        async for event in events:
            if isinstance(event, TurnFinished):
                finished = True
                CHAT_TURNS.labels("completed").inc()
            yield event
    except BaseException as exc:
        if not finished:
            CHAT_TURNS.labels(turn_outcome(exc)).inc()
        raise


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may read ``/metrics``: a peer inside ``networks``, with ``token`` when one is set."""

    networks: tuple[IPNetwork, ...]
    token: bytes | None = None

    @classmethod
    def from_settings(cls, settings: MetricsSettings) -> MetricsAccess:
        """Resolves the token now, so a missing or weak one stops the start, not a scrape."""
        networks = tuple(ipaddress.ip_network(entry, strict=True) for entry in settings.allow_from)
        token = None
        if settings.bearer_token:
            value = resolve_secret(settings.bearer_token).strip()
            if len(value) < MIN_TOKEN_CHARS:
                raise ValueError(
                    f"metrics.bearer_token names a secret shorter than {MIN_TOKEN_CHARS} "
                    "characters; use at least 32 random bytes (e.g. `openssl rand -hex 32`)"
                )
            token = value.encode()
        return cls(networks, token)

    def check(self, client: str | None, authorization: str) -> None:
        """Raise Forbidden (403) for a peer outside the networks, Unauthenticated (401) for
        a missing or wrong token; the address is judged first, so no token is tried from
        outside."""
        ip = parse_address(client) if client else None
        if ip is None or not any(ip in network for network in self.networks):
            raise Forbidden("metrics are not served to this address")
        if self.token is None:
            return
        scheme, _, presented = authorization.partition(" ")
        # compare_digest: the time taken says nothing about how much of the token matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), self.token
        ):
            raise Unauthenticated("send Authorization: Bearer <the metrics token>")


def metrics_router(access: MetricsAccess) -> APIRouter:
    def metrics_guard(request: Request) -> None:
        client = request.client.host if request.client else None
        access.check(client, request.headers.get("authorization", ""))

    # Read by the route x role matrix: guarded by its own check, not by a user's permission.
    metrics_guard.obsigen_public = True  # type: ignore[attr-defined]
    metrics_guard.obsigen_guard = "metrics-access"  # type: ignore[attr-defined]

    router = APIRouter(tags=["operations"])

    @router.get(
        METRICS_PATH,
        dependencies=[Depends(metrics_guard)],
        response_class=Response,
        summary="Prometheus metrics of this process",
        responses={
            200: {
                "description": "The text exposition format (OpenMetrics when asked for)",
                "content": {kind: {"schema": {"type": "string"}} for kind in _EXPOSITION_TYPES},
            }
        },
    )
    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(
            encoder(REGISTRY),
            headers={"Content-Type": content_type, "Cache-Control": "no-store"},
        )

    return router


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """With ``[metrics] enabled``: count every request, and serve ``GET /metrics``."""
    if not settings.metrics.enabled:
        return
    access = MetricsAccess.from_settings(settings.metrics)
    app.add_middleware(HttpMetrics)
    app.include_router(metrics_router(access))
