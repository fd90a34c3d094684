"""Per-tenant retention periods: the ``[retention]`` defaults, narrowed or widened per tenant.

Overrides are keyed by tenant name or id (``retention.tenant_overrides``). An id wins over
a name, so renaming a tenant can never move its data under another tenant's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from obsigen.config import RetentionSettings


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
class RetentionPolicy:
    settings: RetentionSettings

    @property
    def defaults(self) -> TenantRetention:
        s = self.settings
        return TenantRetention(s.files_days, s.artifacts_days, s.conversations_days, s.audit_days)

    def for_tenant(self, tenant_id: str, tenant_name: str | None = None) -> TenantRetention:
        overrides = self.settings.tenant_overrides
        chosen = overrides.get(tenant_id)
        if chosen is None and tenant_name is not None:
            chosen = overrides.get(tenant_name)
        base = self.defaults
        if not chosen:
            return base
        return TenantRetention(
            files_days=chosen.get("files_days", base.files_days),
            artifacts_days=chosen.get("artifacts_days", base.artifacts_days),
            conversations_days=chosen.get("conversations_days", base.conversations_days),
            audit_days=chosen.get("audit_days", base.audit_days),
        )

    def unknown_tenants(self, known: dict[str, str]) -> list[str]:
        """Override keys that name no tenant (``known``: id -> name); likely typos."""
        names = set(known.values())
        return sorted(
            key for key in self.settings.tenant_overrides if key not in known and key not in names
        )
