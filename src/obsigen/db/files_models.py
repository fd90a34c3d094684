"""Uploaded files: one row per object in the object store (issue #8)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, TenantScoped


class StoredFile(TenantScoped, Base):
    """Metadata of an upload; the bytes live in the object store under ``object_key``.

    ``status`` is ``pending`` while the upload streams and is checked, ``ready`` after.
    Only ready rows are visible through the API; pending rows older than a request are
    leftovers of a crash, to be purged with their object.
    """

    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_owner", "tenant_id", "owner_kind", "owner_id"),
        UniqueConstraint("object_key"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(IdColumn)
    # Sanitised (files/names.py): at most 255 bytes of UTF-8.
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    object_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
