"""The data map as a tenant's admins see it (``GET /api/v1/admin/doctor``): the same rows as
``obsigen doctor``, with the tenant's periods, and no host, port, path, bucket or secret."""

from __future__ import annotations

from pathlib import Path

from obsigen.config import Settings
from obsigen.doctor_data import data_map
from obsigen.retention.policy import TenantRetention

# Every location of a deployment with remote stores (user and database names included);
# none may reach a tenant.
LEAKS = ("db.internal", "3306", "dbuser", "tenant-data-bucket", "minio.internal",
         "9000", "cache.internal", "6380", "llm.internal", "8443", "siem.internal", "6514",
         "audit-bucket", "obsigen_prod")  # fmt: skip


def remote(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "paths": {"data_dir": tmp_path},
            "storage": {
                "database_url": "mysql+asyncmy://dbuser@db.internal:3306/obsigen_prod",
                "object_store": "s3://tenant-data-bucket?endpoint_url=https://minio.internal:9000",
                "redis_url": "rediss://cache.internal:6380/0",
                "region": "de",
            },
            "inference": {
                "provider": "openai",
                "base_url": "https://llm.internal:8443/v1",
                "region": "fr",
            },
            "audit": {
                "sinks": ["database", "syslog+tls://siem.internal:6514", "s3://audit-bucket"],
            },
        }
    )


def test_the_tenant_view_names_stores_by_kind_only(tmp_path: Path) -> None:
    settings = remote(tmp_path)
    operator = data_map(settings)
    tenant = data_map(settings, locations=False)

    assert [row.data for row in tenant] == [row.data for row in operator]
    assert [row.region for row in tenant] == [row.region for row in operator]
    assert [row.encryption for row in tenant] == [row.encryption for row in operator]
    # The operator's view does name its stores (what the tenant view leaves out).
    assert "db.internal" in " ".join(row.stored for row in operator)
    text = repr([row.as_dict() for row in tenant])
    for leak in LEAKS:
        assert leak not in text, leak
    stored = {row.data: row.stored for row in tenant}
    assert stored["chat history (conversations, messages)"] == "database: MariaDB/MySQL"
    assert stored["uploads"] == "object store: S3-compatible"
    assert stored["sessions, rate limits, token budgets"] == "redis"
    assert stored["inference prompts (redacted)"] == (
        "inference: remote provider (OpenAI-compatible API)"
    )
    assert stored["audit events"] == "database, syslog, s3"


def test_the_tenant_view_shows_the_tenants_periods(tmp_path: Path) -> None:
    rows = data_map(
        Settings.model_validate({"paths": {"data_dir": tmp_path}}),
        retention=TenantRetention(
            files_days=11, artifacts_days=12, conversations_days=13, audit_days=200
        ),
        locations=False,
    )
    retention = {row.data: row.retention for row in rows}
    assert retention["chat history (conversations, messages)"] == "13 days"
    assert retention["uploads"] == "11 days"
    assert retention["artifacts"] == "12 days"
    assert retention["audit events"] == "200 days"
    assert {row.stored for row in rows} >= {
        "database: SQLite, embedded",
        "object store: local disk",
    }
