"""Table of the per-tenant safeguard policy: versioned documents, never updated in place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, TenantScoped


class SafeguardPolicyVersion(TenantScoped, Base):
    """One version of a tenant's detection policy (mode, thresholds, LLM judge).

    A change is a new row with the next version, so every audited verdict can name the exact
    policy that produced it and the history stays readable.
    """

    __tablename__ = "safeguard_policy_versions"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # JSON rather than float columns: MySQL FLOAT is single precision and would turn a
    # threshold of 0.921 into 0.9210000038 on the way back.
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by_kind: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[str] = mapped_column(IdColumn)
