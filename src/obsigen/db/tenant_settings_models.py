"""Settings a tenant's own admins change through the API (issue #10): for now the retention
periods, within the operator's bounds (``[retention.tenant_limits]``, docs/retention.md).

One row per tenant; a NULL period means "the operator's default". The row goes with its tenant
(ON DELETE CASCADE), like every other tenant table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, TenantScoped, UTCDateTime, utcnow


class TenantSettings(TenantScoped, Base):
    __tablename__ = "tenant_settings"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    files_days: Mapped[int | None] = mapped_column(Integer, default=None)
    artifacts_days: Mapped[int | None] = mapped_column(Integer, default=None)
    conversations_days: Mapped[int | None] = mapped_column(Integer, default=None)
    audit_days: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who changed it last (a user id; the audit trail has the full history).
    updated_by_id: Mapped[str | None] = mapped_column(IdColumn, default=None)
