"""Alembic environment: always runs on a connection handed in by obsigen.db.migrate."""

from __future__ import annotations

from alembic import context

from obsigen.db import (  # noqa: F401  - registers the tables on Base.metadata
    artifacts_models,
    auth_models,
    federation_models,
    files_models,
    models,
    retrieval_models,
    safeguard_policy_models,
    scim_models,
    tasks_models,
    tenant_keys_models,
    tenant_settings_models,
    tool_policy_models,
)
from obsigen.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `obsigen migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
