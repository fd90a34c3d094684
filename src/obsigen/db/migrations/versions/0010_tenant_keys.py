"""customer-held keys: per-tenant data keys wrapped by the tenant KEK

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Frozen copy of obsigen.db.base.UTCDateTime as stored: naive UTC, microseconds on MySQL.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # messages.content needs no change: it is LONGTEXT/TEXT, and an envelope
    # ("obs1:<version>:<base64>") is text; rows written before stay readable as plaintext.
    op.create_table(
        "tenant_data_keys",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kek_id", sa.String(length=128), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(length=1024), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("destroyed_at", UTC_DATETIME, nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_data_keys")),
        sa.UniqueConstraint("tenant_id", "version", name=op.f("uq_tenant_data_keys_tenant_id")),
    )
    op.create_index(
        op.f("ix_tenant_data_keys_tenant_id"), "tenant_data_keys", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    # Dropping the table destroys every tenant's data keys, i.e. all encrypted data.
    raise RuntimeError("0010 cannot be downgraded: it would crypto-shred every tenant")
