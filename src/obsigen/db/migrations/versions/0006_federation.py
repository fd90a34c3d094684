"""identity providers, group-to-role mappings, external identities; role binding sources

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Frozen copy of obsigen.db.base.UTCDateTime as stored: naive UTC, microseconds on MySQL.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def _base_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "identity_providers",
        *_base_columns(),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("jit_provisioning", sa.Boolean(), nullable=False),
        sa.Column("trust_idp_mfa", sa.Boolean(), nullable=False),
        sa.Column("default_role", sa.String(length=32), nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        _tenant_fk("identity_providers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_providers")),
        sa.UniqueConstraint("tenant_id", "slug", name=op.f("uq_identity_providers_tenant_id")),
    )
    op.create_table(
        "group_role_mappings",
        *_base_columns(),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        _tenant_fk("group_role_mappings"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_role_mappings")),
        sa.UniqueConstraint(
            "tenant_id",
            "source",
            "group_name",
            "role",
            name=op.f("uq_group_role_mappings_tenant_id"),
        ),
    )
    op.create_table(
        "external_identities",
        *_base_columns(),
        sa.Column("idp_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("last_login_at", UTC_DATETIME, nullable=True),
        _tenant_fk("external_identities"),
        sa.ForeignKeyConstraint(
            ["idp_id"],
            ["identity_providers.id"],
            name=op.f("fk_external_identities_idp_id_identity_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_external_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_identities")),
        sa.UniqueConstraint("idp_id", "subject", name=op.f("uq_external_identities_idp_id")),
    )
    op.create_index(op.f("ix_external_identities_user_id"), "external_identities", ["user_id"])
    with op.batch_alter_table("role_bindings") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=40), nullable=False, server_default="local")
        )


def downgrade() -> None:
    with op.batch_alter_table("role_bindings") as batch:
        batch.drop_column("source")
    op.drop_table("external_identities")
    op.drop_table("group_role_mappings")
    op.drop_table("identity_providers")
