"""Retrieval: the chunks of uploaded files with their embeddings, and ingestion progress.

Both tables hang off ``files`` with ON DELETE CASCADE, so deleting or purging a file (or its
tenant) takes its chunks and progress row with it; an ingestion still running when its file
goes fails on the foreign key instead of leaving orphans.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, LongText, TenantScoped, UTCDateTime, utcnow


class DocumentChunk(TenantScoped, Base):
    """One window of a file's text. ``embedding`` is the float32 little-endian vector
    (L2-normalised, so a dot product is the cosine)."""

    __tablename__ = "document_chunks"
    __table_args__ = (UniqueConstraint("file_id", "seq"),)

    file_id: Mapped[str] = mapped_column(IdColumn, ForeignKey("files.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    # Where in the file: "page 3", "slide 2", "sheet Budget, rows 2-40", "section Intro".
    locator: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(LongText)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    token_count: Mapped[int] = mapped_column(Integer)


class FileIngestion(TenantScoped, Base):
    """Progress of one file's ingestion: queued -> running -> done | failed (or skipped, for
    types without text such as images)."""

    __tablename__ = "file_ingestions"
    __table_args__ = (UniqueConstraint("file_id"),)

    file_id: Mapped[str] = mapped_column(IdColumn, ForeignKey("files.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
