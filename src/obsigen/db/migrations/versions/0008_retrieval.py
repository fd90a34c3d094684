"""ingestion: document chunks, embeddings, ingestion progress

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Frozen copies of obsigen.db.base types as stored: naive UTC (microseconds on MySQL), and
# TEXT that is LONGTEXT on MySQL.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _base_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    ]


def _file_fk(table: str) -> sa.ForeignKeyConstraint:
    # Deleting or purging a file takes its chunks and progress with it.
    return sa.ForeignKeyConstraint(
        ["file_id"], ["files.id"], name=op.f(f"fk_{table}_file_id_files"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "document_chunks",
        *_base_columns(),
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("locator", sa.String(length=200), nullable=False),
        sa.Column("text", LONG_TEXT, nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        _file_fk("document_chunks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_chunks")),
        sa.UniqueConstraint("file_id", "seq", name=op.f("uq_document_chunks_file_id")),
    )
    op.create_index(
        op.f("ix_document_chunks_tenant_id"), "document_chunks", ["tenant_id"], unique=False
    )
    op.create_table(
        "file_ingestions",
        *_base_columns(),
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        _file_fk("file_ingestions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_ingestions")),
        sa.UniqueConstraint("file_id", name=op.f("uq_file_ingestions_file_id")),
    )
    op.create_index(
        op.f("ix_file_ingestions_tenant_id"), "file_ingestions", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_file_ingestions_tenant_id"), table_name="file_ingestions")
    op.drop_table("file_ingestions")
    op.drop_index(op.f("ix_document_chunks_tenant_id"), table_name="document_chunks")
    op.drop_table("document_chunks")
