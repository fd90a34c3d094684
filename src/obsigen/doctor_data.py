"""The data map of ``obsigen doctor``: each kind of data -> where it is stored, the region,
how long it is kept and how it is encrypted, for this deployment's configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from obsigen.config import Settings
from obsigen.residency import is_eea
from obsigen.residency_policy import (
    ResidencyRefused,
    Verdict,
    assess,
    enforce_residency,
)


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


def data_map(settings: Settings) -> list[DataRow]:
    by_target = {v.endpoint.target: v for v in assess(settings)}
    database, objects, inference = (
        by_target["database"],
        by_target["object_store"],
        by_target["inference"],
    )
    encrypted = settings.keys.tenant_encryption
    at_rest = "none beyond the store's own"
    retention = settings.retention
    auth = settings.auth
    rows = [
        DataRow(
            "chat history (conversations, messages)",
            f"{database.endpoint.target}: {database.endpoint.where}",
            _region(database),
            f"{retention.conversations_days} days",
            f"message bodies: {_tenant_key(settings)}; titles: {at_rest}" if encrypted else at_rest,
        ),
    ]
    redis = by_target.get("redis")
    rows.append(
        DataRow(
            "sessions, rate limits, token budgets",
            f"redis: {redis.endpoint.where}" if redis else "in-process memory",
            _region(redis) if redis else f"{_home(settings)}, this host, not persisted",
            f"sessions at most {auth.session_max_s} s, refresh tokens {auth.refresh_ttl_s} s",
            "TLS in transit" if settings.storage.redis_url.startswith("rediss://") else at_rest,
        )
    )
    for kind, days in (
        ("uploads", retention.files_days),
        ("artifacts", retention.artifacts_days),
    ):
        rows.append(
            DataRow(
                kind,
                f"object store: {objects.endpoint.where}",
                _region(objects),
                f"{days} days",
                f"{_tenant_key(settings)}, 64 KiB segments" if encrypted else at_rest,
            )
        )
    rows.append(
        DataRow(
            "retrieval chunks (document_chunks)",
            f"{database.endpoint.target}: {database.endpoint.where}",
            _region(database),
            f"with their file ({retention.files_days} days)",
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
            f"inference: {inference.endpoint.where}",
            _region(inference),
            "not stored by Obsigen" + ("; the provider's own policy applies" if remote else ""),
            transport,
        )
    )
    rows.append(
        DataRow(
            "audit events",
            ", ".join(settings.audit.sinks),
            _region(database),
            f"{retention.audit_days} days",
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
