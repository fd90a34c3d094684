"""Per-tenant retention periods: the ``[retention]`` defaults, a tenant's own choice, and the
operator's per-tenant overrides, in that order of precedence (the last one set wins).

- **Default**: ``[retention]`` (``files_days`` ...), for every tenant.
- **Tenant**: what the tenant's admins stored (``tenant_settings``, ``PUT /api/v1/retention``),
  only ever inside ``[retention.tenant_limits]``. A stored value the operator's limits no
  longer allow (they were narrowed since) is clamped into them when read, so a limit always
  holds without rewriting rows.
- **Operator**: ``retention.tenant_overrides`` by tenant name or id. It beats the tenant's own
  choice: an override is a deployment decision made in reviewed, versioned configuration (a
  legal hold, a contract that fixes a period), and a tenant admin must not be able to undo it
  from the UI. An id wins over a name, so renaming a tenant can never move its data under
  another tenant's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.config import DaysRange, RetentionSettings
from obsigen.db.tenant_settings_models import TenantSettings

# The periods a tenant can choose, by their ``[retention]`` / ``tenant_settings`` name.
PERIODS = ("files_days", "artifacts_days", "conversations_days", "audit_days")
Source = Literal["default", "tenant", "operator"]


@dataclass(frozen=True, slots=True)
class TenantRetention:
    files_days: int
    artifacts_days: int
    conversations_days: int
    audit_days: int

    def cutoffs(self, now: datetime, pending_upload_hours: int) -> dict[str, datetime]:
        """Per kind of data, the time before which it goes."""
        return {
            "conversations": now - timedelta(days=self.conversations_days),
            "files": now - timedelta(days=self.files_days),
            "artifacts": now - timedelta(days=self.artifacts_days),
            "pending_files": now - timedelta(hours=pending_upload_hours),
        }


@dataclass(frozen=True, slots=True)
class PeriodChoice:
    """One period of one tenant: what applies, where it comes from, what could be chosen."""

    days: int
    source: Source
    # What the tenant's admins stored (None: nothing, the default or an override applies).
    stored: int | None
    minimum: int
    maximum: int
    # An operator override pins this period: the tenant's choice is ignored and refused.
    locked: bool


def clamp(days: int, limits: DaysRange) -> int:
    return min(max(days, limits.min), limits.max)


async def load_stored(
    session: AsyncSession, tenant_id: str | None = None
) -> dict[str, dict[str, int]]:
    """Tenant id -> the periods its admins chose (only those set)."""
    query = select(TenantSettings)
    if tenant_id is not None:
        query = query.where(TenantSettings.tenant_id == tenant_id)
    stored: dict[str, dict[str, int]] = {}
    for row in await session.scalars(query):
        chosen = {name: getattr(row, name) for name in PERIODS}
        stored[row.tenant_id] = {k: v for k, v in chosen.items() if v is not None}
    return stored


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    settings: RetentionSettings
    # Tenant id -> the periods its admins stored; empty when built without the database.
    stored: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    async def load(
        cls,
        settings: RetentionSettings,
        sessions: async_sessionmaker[AsyncSession],
        tenant_id: str | None = None,
    ) -> RetentionPolicy:
        """The policy with the stored tenant choices (all tenants, or one)."""
        async with sessions() as session:
            return cls(settings, await load_stored(session, tenant_id))

    @property
    def defaults(self) -> TenantRetention:
        s = self.settings
        return TenantRetention(s.files_days, s.artifacts_days, s.conversations_days, s.audit_days)

    def override(self, tenant_id: str, tenant_name: str | None = None) -> Mapping[str, int]:
        overrides = self.settings.tenant_overrides
        chosen = overrides.get(tenant_id)
        if chosen is None and tenant_name is not None:
            chosen = overrides.get(tenant_name)
        return chosen or {}

    def explain(self, tenant_id: str, tenant_name: str | None = None) -> dict[str, PeriodChoice]:
        """Each period of the tenant with its source and the range its admins may choose."""
        pinned = self.override(tenant_id, tenant_name)
        stored = self.stored.get(tenant_id, {})
        choices: dict[str, PeriodChoice] = {}
        for name in PERIODS:
            limits: DaysRange = getattr(self.settings.tenant_limits, name)
            own = stored.get(name)
            days: int = getattr(self.settings, name)
            source: Source = "default"
            if own is not None:
                days, source = clamp(own, limits), "tenant"
            if name in pinned:
                days, source = pinned[name], "operator"
            choices[name] = PeriodChoice(
                days, source, own, limits.min, limits.max, locked=name in pinned
            )
        return choices

    def for_tenant(self, tenant_id: str, tenant_name: str | None = None) -> TenantRetention:
        choices = self.explain(tenant_id, tenant_name)
        return TenantRetention(**{name: choice.days for name, choice in choices.items()})

    def unknown_tenants(self, known: dict[str, str]) -> list[str]:
        """Override keys that name no tenant (``known``: id -> name); likely typos."""
        names = set(known.values())
        return sorted(
            key for key in self.settings.tenant_overrides if key not in known and key not in names
        )
