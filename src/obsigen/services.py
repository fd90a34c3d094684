"""The running platform's services, built once from Settings and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from obsigen.assistant.hooks import TurnHooks
from obsigen.assistant.turn import TurnServices
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.sink_factory import make_audit_sinks
from obsigen.authz.tool_policy import TenantToolPolicy
from obsigen.config import Settings, ensure_data_dir
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.files.factory import make_object_store
from obsigen.files.stores import ObjectStore
from obsigen.inference.factory import make_provider
from obsigen.inference.interfaces import InferenceProvider
from obsigen.safeguards.canary import SystemPromptCanary
from obsigen.safeguards.output_filters import OutputFilters
from obsigen.safeguards.pipeline import content_guard
from obsigen.safeguards.redaction import PlaceholderRedactor
from obsigen.sandbox.factory import build_runner
from obsigen.sandbox.interfaces import SandboxRunner
from obsigen.sessions.interfaces import BearerAuthenticator
from obsigen.sessions.wiring import AuthServices, build_auth_services
from obsigen.tokens.access import TokenService
from obsigen.tools.registry import ToolRegistry, default_registry


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    provider: InferenceProvider
    tools: ToolRegistry
    audit: AuditRecorder
    hooks: TurnHooks
    redis: Redis | None
    # Keys, access tokens, sessions and second factors.
    auth: AuthServices
    # Uploaded files and artifacts: a local folder or S3.
    objects: ObjectStore
    # None where no sandbox backend runs here (run_python is then not offered).
    sandbox: SandboxRunner | None = None

    @property
    def authenticator(self) -> BearerAuthenticator:
        return self.auth.authenticator

    @property
    def tokens(self) -> TokenService:
        return self.auth.tokens

    @property
    def turn(self) -> TurnServices:
        return TurnServices(
            sessions=self.sessions,
            provider=self.provider,
            tools=self.tools,
            audit=self.audit,
            hooks=self.hooks,
            max_tool_rounds=self.settings.inference.max_tool_rounds,
            default_max_tokens=self.settings.inference.max_tokens,
        )

    async def aclose(self) -> None:
        await self.objects.aclose()
        await self.auth.aclose()
        if self.sandbox is not None:
            await self.sandbox.aclose()
        await self.provider.aclose()
        await self.audit.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def _redis(url: str) -> Redis:
    # A pool that waits (bounded) for a free connection: the default one fails the 101st
    # concurrent request with a connection error, which every caller would read as "Redis
    # down" and answer 503.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=128, timeout=2, socket_connect_timeout=2, socket_timeout=2
    )
    return Redis.from_pool(pool)


def build_services(settings: Settings, provider: InferenceProvider | None = None) -> Services:
    ensure_data_dir(settings)
    engine = make_engine(settings.database_url)
    redis = _redis(settings.storage.redis_url) if settings.storage.redis_url else None
    guard = content_guard(settings.safeguards)
    sessions = make_sessionmaker(engine)
    sandbox = build_runner(settings.sandbox)
    tools = default_registry(sandbox)
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        provider=provider or make_provider(settings.inference),
        tools=tools,
        audit=AuditRecorder(make_audit_sinks(settings)),
        hooks=TurnHooks(
            input_guard=guard,
            tool_output_guard=guard,
            redactor=PlaceholderRedactor(),
            canary=SystemPromptCanary(),
            output_filter_factory=OutputFilters(),
            tool_policy=TenantToolPolicy(sessions, tools),
        ),
        redis=redis,
        sandbox=sandbox,
        auth=build_auth_services(settings, sessions, redis),
        objects=make_object_store(settings),
    )
