"""The edge of the app: proxy trust, CORS and security headers around everything else."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from obsigen.config import Settings
from obsigen.web.cors import Cors
from obsigen.web.headers import SecurityHeaders
from obsigen.web.proxies import ProxyHeaders


def wrap_edge(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` inside, outermost first: proxy headers, security headers, CORS.

    Proxy headers come first so the rest sees the real client and scheme (HSTS depends on it);
    security headers wrap CORS so preflight answers carry them too.
    """
    inner = Cors(app, settings.cors) if settings.cors.allow_origins else app
    inner = SecurityHeaders(inner, hsts_max_age_s=settings.server.hsts_max_age_s)
    return ProxyHeaders(inner, settings.server.trusted_proxies)


def install_edge(app: FastAPI, settings: Settings) -> None:
    """Put the edge middlewares around ``app``'s whole stack.

    ``app.add_middleware`` would place them inside Starlette's ServerErrorMiddleware, and the 500
    that middleware sends for an unhandled exception would then leave without security or CORS
    headers. Wrapping the built stack puts them outside it. Settings errors surface here, at
    start-up, not on the first request.
    """
    if getattr(app.state, "edge_installed", False):
        raise RuntimeError("install_edge was already called on this app")
    wrap_edge(app.router, settings)  # built once now so a bad setting fails here
    build_stack = app.build_middleware_stack

    def build_with_edge() -> ASGIApp:
        return wrap_edge(build_stack(), settings)

    # Starlette builds the stack lazily on the first call, after every add_middleware, so the
    # wrapper includes middleware added later as well.
    app.build_middleware_stack = build_with_edge  # type: ignore[method-assign]
    app.state.edge_installed = True
