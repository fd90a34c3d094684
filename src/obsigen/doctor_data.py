"""The data map of ``obsigen doctor``: each kind of data -> where it is stored, the region,
how long it is kept and how it is encrypted, for this deployment's configuration.

The same table answers ``GET /api/v1/admin/doctor`` for a tenant's admins, with two changes:
the retention column shows that tenant's own periods, and ``locations=False`` names each store
by its kind (``database: MariaDB/MySQL``, ``object store: S3-compatible``) instead of its host,
port, path or bucket. Those are the operator's infrastructure, not the tenant's data: they help
an attacker map the deployment and tell a tenant nothing it needs for its records of processing
(GDPR Art. 30), which are the kind of store, the country, the period and the protection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from obsigen.config import RetentionSettings, Settings
from obsigen.residency import is_eea
from obsigen.residency_policy import (
    ResidencyRefused,
    Verdict,
    assess,
    enforce_residency,
)

if TYPE_CHECKING:
    from obsigen.retention.policy import TenantRetention


@dataclass(frozen=True, slots=True)
class DataRow:
    data: str
    stored: str
    region: str
    retention: str
    encryption: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _region(verdict: Verdict) -> str:
    if verdict.eea:
        return f"{verdict.region} (EEA)"
    if verdict.allowance is not None:
        return f"{verdict.region} (outside the EEA, allowed: {verdict.allowance.reason})"
    return f"{verdict.region} (REFUSED: outside the EEA or undeclared)"


def _home(settings: Settings) -> str:
    region = settings.residency.region
    return f"{region} ({'EEA' if is_eea(region) else 'outside the EEA'})"


def _tenant_key(settings: Settings) -> str:
    kek = settings.keys.kek.split(":", 1)[0]
    return f"AES-256-GCM under the tenant's data key (KEK: {kek})"


_DATABASES = {"sqlite": "SQLite, embedded", "mysql": "MariaDB/MySQL", "mariadb": "MariaDB/MySQL"}


def _store_kind(verdict: Verdict, settings: Settings) -> str:
    """A store named by its kind only: no host, port, path or bucket."""
    target = verdict.endpoint.target
    if target == "database":
        scheme = settings.database_url.split(":", 1)[0].split("+", 1)[0]
        return _DATABASES.get(scheme, scheme)
    if target == "object_store":
        return "local disk" if verdict.endpoint.local else "S3-compatible"
    if target == "inference":
        if settings.inference.provider == "local":
            return "in-process llama.cpp"
        return "remote provider (OpenAI-compatible API)"
    return target


def _sink_kind(sink: str) -> str:
    return sink.split(":", 1)[0].split("+", 1)[0]


def data_map(
    settings: Settings,
    *,
    retention: TenantRetention | None = None,
    locations: bool = True,
) -> list[DataRow]:
    """The rows; ``retention``: one tenant's periods (else the defaults); ``locations=False``:
    stores by kind, without where they are (the tenant view, see the module docstring)."""
    by_target = {v.endpoint.target: v for v in assess(settings)}

    def where(verdict: Verdict) -> str:
        if locations:
            return verdict.endpoint.where
        return _store_kind(verdict, settings)

    database, objects, inference = (
        by_target["database"],
        by_target["object_store"],
        by_target["inference"],
    )
    encrypted = settings.keys.tenant_encryption
    at_rest = "none beyond the store's own"
    periods: TenantRetention | RetentionSettings = retention or settings.retention
    auth = settings.auth
    rows = [
        DataRow(
            "chat history (conversations, messages)",
            f"{database.endpoint.target}: {where(database)}",
            _region(database),
            f"{periods.conversations_days} days",
            f"message bodies: {_tenant_key(settings)}; titles: {at_rest}" if encrypted else at_rest,
        ),
    ]
    redis = by_target.get("redis")
    rows.append(
        DataRow(
            "sessions, rate limits, token budgets",
            (f"redis: {redis.endpoint.where}" if locations else "redis")
            if redis
            else "in-process memory",
            _region(redis) if redis else f"{_home(settings)}, this host, not persisted",
            f"sessions at most {auth.session_max_s} s, refresh tokens {auth.refresh_ttl_s} s",
            "TLS in transit" if settings.storage.redis_url.startswith("rediss://") else at_rest,
        )
    )
    for kind, days in (
        ("uploads", periods.files_days),
        ("artifacts", periods.artifacts_days),
    ):
        rows.append(
            DataRow(
                kind,
                f"object store: {where(objects)}",
                _region(objects),
                f"{days} days",
                f"{_tenant_key(settings)}, 64 KiB segments" if encrypted else at_rest,
            )
        )
    rows.append(
        DataRow(
            "retrieval chunks (document_chunks)",
            f"{database.endpoint.target}: {where(database)}",
            _region(database),
            f"with their file ({periods.files_days} days)",
            at_rest,
        )
    )
    remote = settings.inference.provider != "local"
    transport = (
        "TLS in transit"
        if settings.inference.base_url.startswith("https://")
        else "in-process"
        if not remote
        else "NOT encrypted in transit (http)"
    )
    rows.append(
        DataRow(
            "inference prompts (redacted)",
            f"inference: {where(inference)}",
            _region(inference),
            "not stored by Obsigen" + ("; the provider's own policy applies" if remote else ""),
            transport,
        )
    )
    rows.append(
        DataRow(
            "audit events",
            ", ".join(
                settings.audit.sinks
                if locations
                else dict.fromkeys(map(_sink_kind, settings.audit.sinks))
            ),
            _region(database),
            f"{periods.audit_days} days",
            "hash-chained and signed; credentials masked; " + at_rest,
        )
    )
    return rows


def residency_problems(settings: Settings) -> list[str]:
    try:
        enforce_residency(settings)
    except ResidencyRefused as exc:
        return [str(exc)]
    return []


def format_data_map(rows: list[DataRow]) -> list[str]:
    lines = ["data"]
    for row in rows:
        lines.append(f"  {row.data}")
        lines.append(f"      stored:     {row.stored}")
        lines.append(f"      region:     {row.region}")
        lines.append(f"      retention:  {row.retention}")
        lines.append(f"      encryption: {row.encryption}")
    return lines
