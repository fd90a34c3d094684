"""Edge test helpers: an app whose routes succeed, fail, stream and echo what they see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from obsigen.config import Settings
from obsigen.web.edge import install_edge
from obsigen.web.problems import install_problem_handlers


class Item(BaseModel):
    name: str


def edge_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/ok")
    async def ok(request: Request) -> dict[str, Any]:
        return {
            "client": request.client.host if request.client else None,
            "scheme": request.url.scheme,
            "host": request.headers.get("host"),
            "forwarded_for": request.headers.get("x-forwarded-for"),
        }

    @app.post("/items")
    async def items(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @app.get("/raises")
    async def raises() -> None:
        raise RuntimeError("unexpected")

    @app.get("/http-500")
    async def http_500() -> None:
        raise HTTPException(status_code=500, detail="failed")

    @app.get("/returns-500")
    async def returns_500() -> JSONResponse:
        return JSONResponse({"error": "failed"}, status_code=500)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"one ", b"two ", b"three"):
                yield part

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/own-headers")
    async def own_headers() -> JSONResponse:
        return JSONResponse(
            {},
            headers={
                "Content-Security-Policy": "default-src 'none'",
                "Access-Control-Allow-Origin": "https://evil.example",
            },
        )

    install_edge(app, settings)
    return app


def edge_settings(**sections: Any) -> Settings:
    # model_validate, not Settings(): no environment variable or config file of the caller's
    # shell can change what a test configures.
    return Settings.model_validate(sections)


def edge_client(
    settings: Settings | None = None,
    *,
    peer: str = "203.0.113.9",
    base_url: str = "http://testserver",
) -> httpx.AsyncClient:
    """A client of a fresh edge app, seen as coming from ``peer``; use with ``async with``."""
    app = edge_app(settings or edge_settings())
    transport = httpx.ASGITransport(app=app, client=(peer, 4711), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=base_url)
