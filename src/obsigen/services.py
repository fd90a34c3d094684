"""The running platform's services, built once from Settings and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from obsigen.assistant.hooks import TurnHooks
from obsigen.assistant.turn import TurnServices
from obsigen.audit.file_sink import FileAuditSink
from obsigen.audit.interfaces import AuditSink
from obsigen.audit.recorder import AuditRecorder
from obsigen.config import Settings, ensure_data_dir
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.inference.factory import make_provider
from obsigen.inference.interfaces import InferenceProvider
from obsigen.tools.registry import ToolRegistry, default_registry


def make_audit_sinks(settings: Settings) -> list[AuditSink]:
    sinks: list[AuditSink] = []
    for spec in settings.audit.sinks:
        if spec == "file":
            sinks.append(FileAuditSink(settings.paths.data_dir / "audit"))
        else:
            raise ValueError(f"audit sink {spec!r} is not available yet (see docs/audit.md)")
    return sinks


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
        await self.provider.aclose()
        await self.audit.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def build_services(settings: Settings, provider: InferenceProvider | None = None) -> Services:
    ensure_data_dir(settings)
    engine = make_engine(settings.database_url)
    redis = Redis.from_url(settings.storage.redis_url) if settings.storage.redis_url else None
    return Services(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        provider=provider or make_provider(settings.inference),
        tools=default_registry(),
        audit=AuditRecorder(make_audit_sinks(settings)),
        hooks=TurnHooks(),
        redis=redis,
    )
