"""``obsigen serve``: uvicorn with the edge settings (TLS, proxies) applied."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from obsigen.config import Settings
from obsigen.web.tls import build_ssl_context

log = logging.getLogger(__name__)


def uvicorn_config(
    app: ASGIApp,
    settings: Settings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **overrides: Any,
) -> uvicorn.Config:
    """The uvicorn configuration for ``app``; raises TlsConfigError before anything listens."""
    server = settings.server
    if ssl_context is None and server.tls_enabled:
        ssl_context = build_ssl_context(server)
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "log_level": "info",
        "server_header": False,
        # Our ProxyHeaders middleware decides whom to believe; uvicorn's own would trust
        # 127.0.0.1 by default and pick a different X-Forwarded-For entry.
        "proxy_headers": False,
    }
    if ssl_context is not None:
        options["ssl_context_factory"] = _fixed_context(ssl_context)
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _fixed_context(
    context: ssl.SSLContext,
) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context

    return factory


def serve(settings: Settings) -> None:
    """Run the server until interrupted. TlsConfigError: TLS misconfigured (nothing started)."""
    from obsigen.app import create_app

    server = settings.server
    # Checked before the app is built, so a TLS mistake is the first and only thing reported.
    context = build_ssl_context(server) if server.tls_enabled else None
    if context is None and not _loopback(server.host):
        log.warning(
            "serving plain HTTP on %s: configure server.tls_cert/tls_key, or put a TLS proxy in "
            "front and list it in server.trusted_proxies",
            server.host,
        )
    uvicorn.Server(uvicorn_config(create_app(settings), settings, ssl_context=context)).run()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
