"""create_app(settings): middleware order, routers, service wiring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from obsigen import __version__
from obsigen.config import Settings
from obsigen.db.migrate import current_revision, head_revision
from obsigen.inference.catalog import ModelCatalog
from obsigen.services import Services, build_services
from obsigen.web.api import (
    approvals,
    audit_events,
    auth,
    chat_completions,
    code,
    conversations,
    health,
    jwks,
    models,
    roles,
)
from obsigen.web.headers import SecurityHeaders
from obsigen.web.problems import install_problem_handlers


class NotMigrated(RuntimeError):
    pass


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or build_services(settings)
        if await current_revision(svc.engine) != head_revision():
            await svc.aclose()
            raise NotMigrated("the database schema is not current: run `obsigen migrate`")
        app.state.services = svc
        # Remote audit sinks deliver in the background; a backlog left spooled by the previous
        # process starts draining now rather than at the first new event.
        svc.audit.start()
        if svc.auth is not None:
            await svc.auth.start()
        if services is None and svc.sandbox is not None:
            # Only a server that owns its services warms the pool at start; injected ones
            # (tests) fill it on first use instead of making sandboxes nobody runs.
            svc.sandbox.warm()
        app.state.catalog = ModelCatalog(svc.provider, settings.inference.model)
        try:
            yield
        finally:
            if services is None:
                await svc.aclose()

    app = FastAPI(
        title="Obsigen",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.add_middleware(SecurityHeaders)
    for module in (
        health,
        jwks,
        auth,
        models,
        chat_completions,
        conversations,
        approvals,
        code,
        audit_events,
        roles,
    ):
        app.include_router(module.router)
    return app
