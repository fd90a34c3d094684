"""``obsigen doctor``: every component, its backend, whether it answers, and its region;
then the rotation age of every credential (ok / warn / expired, docs/secrets.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from obsigen.config import Settings
from obsigen.db.engine import make_engine
from obsigen.inference.factory import make_provider
from obsigen.residency import LOCAL, is_eea
from obsigen.sandbox.detect import detect
from obsigen.secrets.connect import redis_connection
from obsigen.secrets.rotation import RotationItem, rotation_report


@dataclass(frozen=True, slots=True)
class ComponentReport:
    component: str
    backend: str
    location: str
    reachable: str  # "yes" | "no: <why>" | "n/a"
    region: str
    holds: str  # which data types live here

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _region(declared: str, settings: Settings) -> str:
    region = declared or LOCAL
    if region == LOCAL:
        return f"local (this host; residency {settings.residency.region})"
    return f"{region} ({'EEA' if is_eea(region) else 'outside the EEA'})"


async def _database(settings: Settings) -> ComponentReport:
    url = make_url(settings.database_url)
    engine = make_engine(settings.database_url, settings.storage.database_password)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        reachable = "yes"
    except Exception as exc:  # noqa: BLE001 - the doctor reports every failure by name
        reachable = f"no: {type(exc).__name__}"
    finally:
        await engine.dispose()
    backend = "sqlite (embedded)" if url.get_backend_name() == "sqlite" else "mysql/mariadb"
    location = url.render_as_string(hide_password=True)
    declared = settings.storage.region if backend != "sqlite (embedded)" else LOCAL
    return ComponentReport(
        "database", backend, location, reachable, _region(declared, settings),
        "conversations, messages, tool calls, users, API keys",
    )  # fmt: skip


async def _redis(settings: Settings) -> ComponentReport:
    if not settings.storage.redis_url:
        return ComponentReport(
            "cache", "in-process", "memory", "n/a", _region(LOCAL, settings),
            "sessions, rate-limit counters (not persisted)",
        )  # fmt: skip
    url, auth = redis_connection(settings.storage.redis_url, settings.storage.redis_password)
    client = Redis.from_url(url, socket_connect_timeout=2, **auth)
    try:
        await client.ping()
        reachable = "yes"
    except Exception as exc:  # noqa: BLE001
        reachable = f"no: {type(exc).__name__}"
    finally:
        await client.aclose()
    location = make_url(settings.storage.redis_url)
    return ComponentReport(
        "cache", "redis", location.render_as_string(hide_password=True), reachable,
        _region(settings.storage.region, settings), "sessions, rate-limit counters",
    )  # fmt: skip


async def _inference(settings: Settings) -> ComponentReport:
    provider = make_provider(settings.inference)
    try:
        reachable = "yes" if await provider.ready() else "no: not ready"
    finally:
        await provider.aclose()
    if settings.inference.provider == "local":
        return ComponentReport(
            "inference", "local (llama.cpp, SmolLM2-135M-Instruct)", "in-process", reachable,
            _region(LOCAL, settings), "prompts (processed, not stored)",
        )  # fmt: skip
    return ComponentReport(
        "inference",
        "openai-compatible HTTP",
        settings.inference.base_url,
        reachable,
        _region(settings.inference.region or "unknown", settings)
        if settings.inference.region
        else "undeclared",
        "prompts (processed, not stored)",
    )


def _object_store(settings: Settings) -> ComponentReport:
    if settings.storage.object_store == "local":
        path = settings.paths.data_dir / "objects"
        return ComponentReport(
            "object store", "local folder", str(path), "n/a", _region(LOCAL, settings),
            "uploaded files, artifacts",
        )  # fmt: skip
    return ComponentReport(
        "object store", "s3", settings.storage.object_store.split("?")[0], "unchecked",
        _region(settings.storage.region, settings), "uploaded files, artifacts",
    )  # fmt: skip


def _audit(settings: Settings) -> list[ComponentReport]:
    reports = []
    for sink in settings.audit.sinks:
        if sink == "file":
            path = settings.paths.data_dir / "audit"
            reports.append(
                ComponentReport(
                    "audit sink",
                    "jsonl file",
                    str(path),
                    "n/a",
                    _region(LOCAL, settings),
                    "audit events",
                )
            )
        else:
            reports.append(
                ComponentReport(
                    "audit sink",
                    sink.split(":")[0],
                    sink,
                    "unchecked",
                    _region(settings.storage.region, settings),
                    "audit events",
                )
            )
    return reports


def _keys(settings: Settings) -> ComponentReport:
    backend = settings.keys.signing.split(":")[0]
    location = str(settings.paths.data_dir / "keys") if backend == "software" else backend
    return ComponentReport(
        "keys", backend, location, "n/a", _region(LOCAL, settings), "signing keys, KEKs"
    )


def _sandbox(settings: Settings) -> ComponentReport:
    found = detect(settings.sandbox.backend)
    if found.backend is None:
        # Off by detection is a state to report; a configured backend that cannot run is a fault.
        reachable = "n/a" if settings.sandbox.backend == "auto" else f"no: {found.reason}"
        backend, where = f"none: code execution is off ({found.reason})", "-"
    else:
        backend = f"{found.backend} ({found.reason})"
        where = (found.runsc if found.backend == "gvisor" else found.bwrap) or "-"
        reachable = "yes"
    return ComponentReport(
        "sandbox", backend, where, reachable, _region(LOCAL, settings),
        "nothing (each run is discarded)",
    )  # fmt: skip


async def diagnose(settings: Settings) -> list[ComponentReport]:
    return [
        await _database(settings),
        await _redis(settings),
        _object_store(settings),
        _keys(settings),
        await _inference(settings),
        *_audit(settings),
        _sandbox(settings),
    ]


async def rotation(settings: Settings) -> list[RotationItem]:
    """The rotation section: every credential's age against its maximum."""
    return await rotation_report(settings)


def format_rotation(items: list[RotationItem]) -> list[str]:
    """Lines for the terminal: kind, name, state, age/max and what to do."""
    lines = ["rotation"]
    width = max(len(item.kind) for item in items)
    for item in items:
        age = "-" if item.age_days is None else f"{item.age_days:g}"
        limit = "-" if item.max_days is None else f"{item.max_days:g}"
        note = f"  ({item.note})" if item.note else ""
        lines.append(
            f"  {item.kind:<{width}}  {item.state.value:<14} {age}/{limit} days  {item.name}{note}"
        )
    return lines
