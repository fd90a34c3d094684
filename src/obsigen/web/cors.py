"""CORS from an exact allow-list (cors.* settings; rules in docs/edge.md).

An origin that is not listed gets no Access-Control-* header at all, so the browser keeps the
response from the page; the server still answers the request (CORS protects readers, it is not
access control, which is the bearer token's job).
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obsigen.config import CorsSettings
from obsigen.web.problems import MEDIA_TYPE, PROBLEM_BASE

_VARY_ACTUAL = b"Origin"
_VARY_PREFLIGHT = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class Cors:
    def __init__(self, app: ASGIApp, settings: CorsSettings) -> None:
        self.app = app
        self.any_origin = settings.allow_any_origin
        self.origins = frozenset(settings.allow_origins)
        self.credentials = settings.allow_credentials
        self.methods = frozenset(settings.allow_methods)
        self.headers = frozenset(settings.allow_headers)
        self.preflight_headers: list[tuple[bytes, bytes]] = [
            (b"access-control-allow-methods", ", ".join(settings.allow_methods).encode()),
            (b"access-control-max-age", str(settings.max_age_s).encode()),
        ]
        if settings.allow_headers:
            self.preflight_headers.append(
                (b"access-control-allow-headers", ", ".join(settings.allow_headers).encode())
            )
        self.expose: list[tuple[bytes, bytes]] = []
        if settings.expose_headers:
            self.expose.append(
                (b"access-control-expose-headers", ", ".join(settings.expose_headers).encode())
            )

    def allowed(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def _allow_origin(self, origin: str) -> list[tuple[bytes, bytes]]:
        # "*" only where credentials are off: the settings refuse the combination, and with
        # credentials a browser would reject "*" anyway.
        value = b"*" if self.any_origin else origin.encode("latin-1")
        granted = [(b"access-control-allow-origin", value)]
        if self.credentials:
            granted.append((b"access-control-allow-credentials", b"true"))
        return granted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        if (
            origin is not None
            and scope["method"] == "OPTIONS"
            and "access-control-request-method" in request_headers
        ):
            await self._preflight(origin, request_headers, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (n, v)
                    for n, v in message.get("headers", [])
                    if not n.lower().startswith(b"access-control-")
                ]
                if origin is not None and self.allowed(origin):
                    headers += self._allow_origin(origin) + self.expose
                message["headers"] = _add_vary(headers, _VARY_ACTUAL)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str, request_headers: Headers, send: Send) -> None:
        method = request_headers["access-control-request-method"].strip().upper()
        asked = {
            name.strip().lower()
            for name in request_headers.get("access-control-request-headers", "").split(",")
            if name.strip()
        }
        reason = None
        if not self.allowed(origin):
            reason = "origin not allowed"
        elif method not in self.methods:
            reason = f"method {method} not allowed"
        elif not asked <= self.headers:
            reason = "request headers not allowed: " + ", ".join(sorted(asked - self.headers))
        headers: list[tuple[bytes, bytes]] = [(b"vary", _VARY_PREFLIGHT)]
        if reason is not None:
            body = json.dumps(
                {
                    "type": PROBLEM_BASE + "cors-refused",
                    "title": "Cross-origin request refused",
                    "status": 403,
                    "detail": reason,
                }
            ).encode()
            headers += [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers += [*self._allow_origin(origin), *self.preflight_headers]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _add_vary(headers: list[tuple[bytes, bytes]], token: bytes) -> list[tuple[bytes, bytes]]:
    """Merge ``token`` into Vary: caches must not hand one origin's answer to another."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            listed = {part.strip().lower() for part in value.split(b",")}
            if token.lower() not in listed and b"*" not in listed:
                headers[index] = (name, value + b", " + token)
            return headers
    headers.append((b"vary", token))
    return headers
