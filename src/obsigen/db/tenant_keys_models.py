"""Per-tenant data keys (issue #9, customer-held keys): wrapped by the deployment's KEK.

``tenant_id`` deliberately has no foreign key to ``tenants``: erasing a tenant deletes its row,
and the destroyed key rows must outlive it as the record that its data was crypto-shredded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, TenantScoped, UTCDateTime


class TenantDataKey(TenantScoped, Base):
    """One AES-256 data key (DEK) of a tenant. ``state``: ``active`` (encrypts and decrypts),
    ``retired`` (decrypts only, after a DEK rotation) or ``destroyed`` (``wrapped`` is NULL:
    nothing encrypted under it can be read again)."""

    __tablename__ = "tenant_data_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    version: Mapped[int] = mapped_column(Integer)
    kek_id: Mapped[str] = mapped_column(String(128))
    # At most a KMS ciphertext blob (~200 bytes) or our 1+12+32+16 bytes.
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary(1024), default=None)
    state: Mapped[str] = mapped_column(String(16), default="active")
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
