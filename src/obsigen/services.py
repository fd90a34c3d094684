"""The running platform's services, built once from Settings and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from obsigen.artifacts.store import ArtifactStore
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
from obsigen.residency_policy import enforce_residency
from obsigen.retrieval.service import RetrievalService
from obsigen.safeguards.canary import SystemPromptCanary
from obsigen.safeguards.output_filters import OutputFilters
from obsigen.safeguards.pipeline import content_guard
from obsigen.safeguards.redaction import PlaceholderRedactor
from obsigen.sandbox.factory import build_runner
from obsigen.sandbox.interfaces import SandboxRunner
from obsigen.secrets.connect import redis_connection
from obsigen.sessions.interfaces import BearerAuthenticator
from obsigen.sessions.wiring import AuthServices, build_auth_services
from obsigen.tasks.ingest import register_ingestion, send_ingestion
from obsigen.tasks.queue import TaskQueue, build_task_queue
from obsigen.tenantkeys.wiring import TenantEncryption, build_tenant_encryption
from obsigen.tokens.access import TokenService
from obsigen.tools.registry import ToolRegistry, default_registry
from obsigen.tools.search_files import search_files_tool


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
    # Per-tenant data keys (docs/tenant-keys.md); None with keys.tenant_encryption off.
    tenant_encryption: TenantEncryption | None = None
    # Ingestion of uploads and cited search over them (docs/retrieval.md).
    retrieval: RetrievalService | None = None
    # Background work (docs/tasks.md): in-process, or sent to `obsigen worker` processes.
    tasks: TaskQueue | None = None

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
        if self.tasks is not None:
            await self.tasks.aclose()
        if self.retrieval is not None:
            await self.retrieval.aclose()
        await self.objects.aclose()
        if self.tenant_encryption is not None:
            await self.tenant_encryption.aclose()
        await self.auth.aclose()
        if self.sandbox is not None:
            await self.sandbox.aclose()
        await self.provider.aclose()
        await self.audit.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def _redis(url: str, password: str = "") -> Redis:
    # A pool that waits (bounded) for a free connection: the default one fails the 101st
    # concurrent request with a connection error, which every caller would read as "Redis
    # down" and answer 503.
    url, auth = redis_connection(url, password)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=128, timeout=2, socket_connect_timeout=2, socket_timeout=2, **auth
    )
    return Redis.from_pool(pool)


def build_services(settings: Settings, provider: InferenceProvider | None = None) -> Services:
    # Before anything connects: a store outside the EEA without an allowance is never opened.
    enforce_residency(settings)
    ensure_data_dir(settings)
    storage = settings.storage
    engine = make_engine(settings.database_url, storage.database_password)
    redis = _redis(storage.redis_url, storage.redis_password) if storage.redis_url else None
    sessions = make_sessionmaker(engine)
    provider = provider or make_provider(settings.inference)
    guard = content_guard(settings.safeguards, sessions, provider)
    tenant_encryption = build_tenant_encryption(settings, sessions)
    sandbox = build_runner(settings.sandbox)
    objects = make_object_store(settings, tenant_encryption.objects if tenant_encryption else None)
    audit = AuditRecorder(make_audit_sinks(settings))
    tools = default_registry(sandbox, ArtifactStore(sessions, objects, audit))
    retrieval = RetrievalService(sessions, objects)
    tools.register(search_files_tool(retrieval.searcher, guard, audit))
    tasks = build_task_queue(settings, sessions)
    register_ingestion(tasks, engine, retrieval.ingestion.deps)
    if tasks.remote:
        retrieval.send_to(partial(send_ingestion, tasks))
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        provider=provider,
        tools=tools,
        audit=audit,
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
        objects=objects,
        tenant_encryption=tenant_encryption,
        retrieval=retrieval,
        tasks=tasks,
    )
