"""create_app(settings): middleware order, routers, service wiring."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from obsigen import __version__
from obsigen.config import Settings
from obsigen.db.migrate import current_revision, head_revision
from obsigen.inference.catalog import ModelCatalog
from obsigen.ratelimit.middleware import build_rate_limits, install_rate_limits
from obsigen.retention.scheduler import RetentionScheduler
from obsigen.secrets.rotation import enforce_rotation, rotation_report, warnings
from obsigen.services import Services, build_services
from obsigen.web.api import (
    accounts,
    approvals,
    artifacts,
    audit_events,
    auth,
    chat_completions,
    code,
    conversations,
    files,
    health,
    idps,
    jwks,
    models,
    oidc,
    roles,
    safeguards,
    saml,
    scim,
    search,
    tasks,
    tenant_settings,
)
from obsigen.web.edge import install_edge
from obsigen.web.metrics import install_metrics
from obsigen.web.openapi import install_openapi
from obsigen.web.problems import install_problem_handlers
from obsigen.web.ui import router as ui

log = logging.getLogger(__name__)


class NotMigrated(RuntimeError):
    pass


async def _check_rotation(svc: Services) -> None:
    """Warn about credentials near their maximum age; refuse to serve with expired ones."""
    report = await rotation_report(
        svc.settings,
        signing=svc.auth.keys,
        sessions=svc.sessions,
    )
    for item in warnings(report):
        log.warning(
            "rotation due: %s %s is %s of %s days old", item.kind, item.name, item.age_days,
            item.max_days,
        )  # fmt: skip
    try:
        enforce_rotation(report)
    except Exception:
        await svc.aclose()
        raise


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or build_services(settings)
        if await current_revision(svc.engine) != head_revision():
            await svc.aclose()
            raise NotMigrated("the database schema is not current: run `obsigen migrate`")
        app.state.services = svc
        app.state.rate_limits = build_rate_limits(svc.settings.ratelimit, svc.redis)
        # Remote audit sinks deliver in the background; a backlog left spooled by the previous
        # process starts draining now rather than at the first new event.
        svc.audit.start()
        await svc.auth.start()
        if svc.retrieval is not None:
            # Also picks up files a stopped process left queued.
            svc.retrieval.start()
        await _check_rotation(svc)
        if services is None and svc.sandbox is not None:
            # Only a server that owns its services warms the pool at start; injected ones
            # (tests) fill it on first use instead of making sandboxes nobody runs.
            svc.sandbox.warm()
        app.state.catalog = ModelCatalog(svc.provider, settings.inference.model)
        # Purges expired conversations and files on a schedule, one replica at a time.
        retention = RetentionScheduler.from_services(svc)
        if svc.tasks is None or not svc.tasks.remote:
            # With a real broker the `obsigen worker` processes run it (docs/tasks.md).
            retention.start()
        try:
            yield
        finally:
            await retention.stop()
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
    install_rate_limits(app)
    install_edge(app, settings)
    # [metrics] enabled: HTTP request metrics and GET /metrics (docs/metrics.md).
    install_metrics(app, settings)
    for module in (
        health,
        jwks,
        auth,
        models,
        chat_completions,
        conversations,
        approvals,
        safeguards,
        code,
        audit_events,
        roles,
        accounts,
        tenant_settings,
        files,
        idps,
        oidc,
        saml,
        scim,
        artifacts,
        search,
        tasks,
        ui,
    ):
        app.include_router(module.router)
    install_openapi(app)
    return app
