"""Security headers on every response, errors included; HSTS on those served over HTTPS."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS_MIN_AGE_S = 31_536_000

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cache-control", b"no-store"),
)


def hsts_value(max_age_s: int = HSTS_MIN_AGE_S) -> bytes:
    if max_age_s < HSTS_MIN_AGE_S:
        raise ValueError(f"HSTS max-age must be at least {HSTS_MIN_AGE_S} s (one year)")
    return f"max-age={max_age_s}; includeSubDomains".encode("ascii")


class SecurityHeaders:
    """Adds the headers a route did not set itself.

    HSTS goes only on HTTPS responses (directly, or behind a trusted proxy that said so: the
    proxy middleware runs first and sets ``scope["scheme"]``); over plain HTTP browsers ignore
    it, and sending it there would only suggest a protection that is not in place.
    """

    def __init__(self, app: ASGIApp, hsts_max_age_s: int = HSTS_MIN_AGE_S) -> None:
        self.app = app
        self.hsts = (b"strict-transport-security", hsts_value(hsts_max_age_s))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = SECURITY_HEADERS
        if scope.get("scheme") == "https":
            wanted = (*wanted, self.hsts)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                message["headers"] = headers + [(n, v) for n, v in wanted if n not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)
