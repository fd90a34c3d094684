"""SCIM provisioning: tokens, groups and members, users' SCIM attributes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Frozen copy of obsigen.db.base.UTCDateTime as stored: naive UTC, microseconds on MySQL.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def _base_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "scim_tokens",
        *_base_columns(),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("lookup", sa.String(length=24), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.Column("last_used_at", UTC_DATETIME, nullable=True),
        _tenant_fk("scim_tokens"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_tokens")),
        sa.UniqueConstraint("lookup", name=op.f("uq_scim_tokens_lookup")),
    )
    op.create_table(
        "scim_users",
        *_base_columns(),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("user_name_key", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("given_name", sa.String(length=255), nullable=True),
        sa.Column("family_name", sa.String(length=255), nullable=True),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        _tenant_fk("scim_users"),
        _user_fk("scim_users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_users")),
        sa.UniqueConstraint("user_id", name=op.f("uq_scim_users_user_id")),
        sa.UniqueConstraint("user_name_key", "tenant_id", name=op.f("uq_scim_users_user_name_key")),
    )
    op.create_table(
        "scim_user_emails",
        *_base_columns(),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=254), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=True),
        sa.Column("primary", sa.Boolean(), nullable=False),
        _tenant_fk("scim_user_emails"),
        _user_fk("scim_user_emails"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_user_emails")),
    )
    op.create_index(
        op.f("ix_scim_user_emails_user_id"), "scim_user_emails", ["user_id"], unique=False
    )
    op.create_table(
        "scim_groups",
        *_base_columns(),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("display_name_key", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        _tenant_fk("scim_groups"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_groups")),
        sa.UniqueConstraint(
            "display_name_key", "tenant_id", name=op.f("uq_scim_groups_display_name_key")
        ),
    )
    op.create_table(
        "scim_group_members",
        *_base_columns(),
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("display", sa.String(length=255), nullable=True),
        _tenant_fk("scim_group_members"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["scim_groups.id"],
            name=op.f("fk_scim_group_members_group_id_scim_groups"),
            ondelete="CASCADE",
        ),
        _user_fk("scim_group_members"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_group_members")),
        sa.UniqueConstraint("group_id", "user_id", name=op.f("uq_scim_group_members_group_id")),
    )
    op.create_index(
        op.f("ix_scim_group_members_user_id"), "scim_group_members", ["user_id"], unique=False
    )
    # API keys may act for a user, so deprovisioning the user can revoke them.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("owner_user_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_api_keys_owner_user_id_users"),
            "users",
            ["owner_user_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(batch.f("ix_api_keys_owner_user_id"), ["owner_user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index(batch.f("ix_api_keys_owner_user_id"))
        batch.drop_constraint(batch.f("fk_api_keys_owner_user_id_users"), type_="foreignkey")
        batch.drop_column("owner_user_id")
    op.drop_index(op.f("ix_scim_group_members_user_id"), table_name="scim_group_members")
    op.drop_table("scim_group_members")
    op.drop_table("scim_groups")
    op.drop_index(op.f("ix_scim_user_emails_user_id"), table_name="scim_user_emails")
    op.drop_table("scim_user_emails")
    op.drop_table("scim_users")
    op.drop_table("scim_tokens")
