"""Generated artifacts: slides, charts and sandbox outputs, one row per stored object."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, TenantScoped


class StoredArtifact(TenantScoped, Base):
    """Metadata of an artifact; the bytes live in the object store under ``object_key``.

    A row is written only after its object is complete, so every row is downloadable.
    ``conversation_id`` and ``interaction_id`` are labels for correlation (no foreign key):
    an artifact follows its own retention period, not its conversation's.
    """

    __tablename__ = "artifacts"
    __table_args__ = (
        Index("ix_artifacts_owner", "tenant_id", "owner_kind", "owner_id"),
        Index("ix_artifacts_created", "tenant_id", "created_at"),
        UniqueConstraint("object_key"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(IdColumn)
    conversation_id: Mapped[str | None] = mapped_column(IdColumn, nullable=True)
    interaction_id: Mapped[str | None] = mapped_column(IdColumn, nullable=True)
    # slides | chart | sandbox
    kind: Mapped[str] = mapped_column(String(16))
    # Sanitised (files/names.py): at most 255 bytes of UTF-8.
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    object_key: Mapped[str] = mapped_column(String(200))
