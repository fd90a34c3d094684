"""Per-tenant safeguard policy: stored in the tenant database, versioned, read per request.

What wins, from weakest to strongest:

1. ``[safeguards]`` in the configuration: the default mode and thresholds (version 0).
2. ``[safeguards.tenant_overrides."<tenant id>"]`` (deprecated): still version 0, for a tenant
   that has no stored policy.
3. The tenant's stored policy (version >= 1), set by its admins through the API. A field left
   unset (``null``) follows ``[safeguards]``, not the override.
4. The bounds in ``[safeguards]`` (``tenant_modes``, ``tenant_threshold_min/max``, whether the
   judge is available) always hold: the API refuses values outside them, and a stored value
   that a later configuration puts outside them is clamped when it is read. ``enabled = false``
   turns detection off for every tenant.

The turn asks for the policy on every request; :class:`PolicyCache` answers from memory for
``policy_cache_s`` seconds, and the API drops a tenant's entry when its policy changes, so a
change applies at once in the process that stored it and within seconds in the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.authz.principal import Principal
from obsigen.config import SafeguardsSettings
from obsigen.db.safeguard_policy_models import SafeguardPolicyVersion

log = logging.getLogger(__name__)

Mode = Literal["block", "warn", "log-only"]
Channel = Literal["user", "indirect"]


def channel_of(source: str) -> Channel:
    """The user's own prompt, or text the user did not type (tool:*, retrieval, file, ...)."""
    return "user" if source == "user" else "indirect"


class PolicyDocument(BaseModel):
    """What a tenant admin stores; ``None`` follows ``[safeguards]``."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode | None = None
    threshold: float | None = Field(default=None, gt=0, le=1)
    indirect_threshold: float | None = Field(default=None, gt=0, le=1)
    judge: bool | None = None


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """The policy in force for one check: what the detectors' score is compared with."""

    mode: Mode = "block"
    threshold: float = 0.5
    indirect_threshold: float = 0.5
    judge: bool = False  # ask the LLM judge about scores in its grey zone
    version: int = 0  # of the tenant's stored policy; 0: the configuration's

    def threshold_for(self, source: str) -> float:
        return self.threshold if channel_of(source) == "user" else self.indirect_threshold


class PolicyOutOfBounds(ValueError):
    """A stored policy the configuration's bounds do not allow."""


def base_policy(settings: SafeguardsSettings, tenant_id: str | None = None) -> GuardPolicy:
    """Version 0: ``[safeguards]``, with the (deprecated) override for ``tenant_id``."""
    policy = GuardPolicy(
        settings.mode,
        settings.threshold,
        settings.indirect_threshold,
        judge=settings.judge.enabled,
    )
    override = settings.tenant_overrides.get(tenant_id) if tenant_id is not None else None
    if override is None:
        return policy
    return GuardPolicy(
        override.mode or policy.mode,
        override.threshold or policy.threshold,
        override.indirect_threshold or policy.indirect_threshold,
        judge=policy.judge,
    )


def check_bounds(settings: SafeguardsSettings, document: PolicyDocument) -> None:
    """Raise :class:`PolicyOutOfBounds` naming the first field the bounds do not allow."""
    if document.mode is not None and document.mode not in settings.tenant_modes:
        allowed = ", ".join(settings.tenant_modes)
        raise PolicyOutOfBounds(f"mode {document.mode!r} is not allowed here (allowed: {allowed})")
    low, high = settings.tenant_threshold_min, settings.tenant_threshold_max
    for name in ("threshold", "indirect_threshold"):
        value = getattr(document, name)
        if value is not None and not low <= value <= high:
            raise PolicyOutOfBounds(f"{name} must be between {low} and {high}")
    if document.judge and not settings.judge.enabled:
        raise PolicyOutOfBounds("no LLM judge is configured ([safeguards.judge] enabled = false)")


def resolve(settings: SafeguardsSettings, version: int, document: PolicyDocument) -> GuardPolicy:
    """The policy in force for a stored document under the current configuration."""
    default = base_policy(settings)
    low, high = settings.tenant_threshold_min, settings.tenant_threshold_max

    def bounded(value: float | None, fallback: float) -> float:
        # The configuration may have tightened its bounds since the document was stored.
        return fallback if value is None else min(max(value, low), high)

    mode = document.mode if document.mode in settings.tenant_modes else default.mode
    judge = default.judge if document.judge is None else document.judge
    return GuardPolicy(
        mode=mode or default.mode,
        threshold=bounded(document.threshold, default.threshold),
        indirect_threshold=bounded(document.indirect_threshold, default.indirect_threshold),
        judge=judge and settings.judge.enabled,
        version=version,
    )


async def stored_policy(session: AsyncSession, tenant_id: str) -> tuple[int, PolicyDocument]:
    """The tenant's latest stored document; (0, empty) when it has none."""
    row = await session.scalar(
        select(SafeguardPolicyVersion)
        .where(SafeguardPolicyVersion.tenant_id == tenant_id)
        .order_by(SafeguardPolicyVersion.version.desc())
        .limit(1)
    )
    if row is None:
        return 0, PolicyDocument()
    return row.version, PolicyDocument.model_validate(row.document)


async def effective_policy(
    session: AsyncSession, settings: SafeguardsSettings, tenant_id: str
) -> GuardPolicy:
    version, document = await stored_policy(session, tenant_id)
    if version == 0:
        return base_policy(settings, tenant_id)
    return resolve(settings, version, document)


async def store_policy(
    session: AsyncSession,
    settings: SafeguardsSettings,
    principal: Principal,
    document: PolicyDocument,
) -> tuple[int, PolicyDocument, PolicyDocument]:
    """Check the bounds and save the next version; returns (version, before, after)."""
    check_bounds(settings, document)
    version, before = await stored_policy(session, principal.tenant_id)
    row = SafeguardPolicyVersion(
        tenant_id=principal.tenant_id,
        version=version + 1,
        document=document.model_dump(mode="json"),
        created_by_kind=principal.kind,
        created_by_id=principal.id,
    )
    session.add(row)
    # Two admins saving at once: the unique (tenant, version) makes the second fail, not merge.
    await session.flush()
    return row.version, before, document


class PolicyCache:
    """Each tenant's policy, read from the database at most once per ``ttl_s`` per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: SafeguardsSettings,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self.ttl_s = settings.policy_cache_s
        self._entries: dict[str, tuple[float, GuardPolicy]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def settings(self) -> SafeguardsSettings:
        return self._settings

    def last_known(self, tenant_id: str) -> GuardPolicy | None:
        """The policy last read for the tenant, however old (for synchronous callers)."""
        entry = self._entries.get(tenant_id)
        return entry[1] if entry is not None else None

    def forget(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)

    async def get(self, tenant_id: str) -> GuardPolicy:
        entry = self._entries.get(tenant_id)
        if entry is not None and time.monotonic() - entry[0] < self.ttl_s:
            return entry[1]
        # One read per tenant at a time: a burst of requests after expiry waits for it.
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            entry = self._entries.get(tenant_id)
            if entry is not None and time.monotonic() - entry[0] < self.ttl_s:
                return entry[1]
            try:
                async with self._sessions() as session:
                    policy = await effective_policy(session, self._settings, tenant_id)
            except Exception:
                log.exception("safeguard policy of tenant %s could not be read", tenant_id)
                return self._unreadable(tenant_id)
            self._entries[tenant_id] = (time.monotonic(), policy)
            return policy

    def _unreadable(self, tenant_id: str) -> GuardPolicy:
        """The last policy read, or the configuration's in block mode: never weaker by error."""
        entry = self._entries.get(tenant_id)
        if entry is not None:
            return entry[1]
        base = base_policy(self._settings, tenant_id)
        # Version -1 in the audit: the stored policy could not be read.
        return GuardPolicy("block", base.threshold, base.indirect_threshold, base.judge, -1)


def deprecation_notice(settings: SafeguardsSettings) -> str | None:
    if not settings.tenant_overrides:
        return None
    return (
        "[safeguards.tenant_overrides] is deprecated: it applies only to tenants with no stored "
        "safeguard policy. Set each tenant's policy with PUT /api/v1/safeguards/policy "
        f"({len(settings.tenant_overrides)} override(s) configured)."
    )


__all__ = [
    "Channel",
    "GuardPolicy",
    "Mode",
    "PolicyCache",
    "PolicyDocument",
    "PolicyOutOfBounds",
    "base_policy",
    "channel_of",
    "check_bounds",
    "deprecation_notice",
    "effective_policy",
    "resolve",
    "store_policy",
    "stored_policy",
]
