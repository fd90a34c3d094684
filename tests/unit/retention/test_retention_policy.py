"""Per-tenant retention periods and their configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from obsigen.config import RetentionSettings, Settings
from obsigen.retention.policy import RetentionPolicy, TenantRetention


def test_defaults_come_from_the_retention_section() -> None:
    policy = RetentionPolicy(RetentionSettings(files_days=10, conversations_days=20))
    assert policy.for_tenant("t1", "acme") == TenantRetention(
        files_days=10, artifacts_days=90, conversations_days=20, audit_days=400
    )


def test_an_override_by_name_changes_only_its_keys_for_that_tenant() -> None:
    policy = RetentionPolicy(
        RetentionSettings(tenant_overrides={"acme": {"conversations_days": 7, "audit_days": 200}})
    )
    acme = policy.for_tenant("t1", "acme")
    assert acme.conversations_days == 7
    assert acme.audit_days == 200
    assert acme.files_days == 365
    assert policy.for_tenant("t2", "other") == policy.defaults


def test_an_override_by_id_wins_over_one_by_name() -> None:
    policy = RetentionPolicy(
        RetentionSettings(
            tenant_overrides={"acme": {"files_days": 5}, "t1": {"files_days": 50}},
        )
    )
    assert policy.for_tenant("t1", "acme").files_days == 50
    assert policy.for_tenant("t1").files_days == 50


def test_cutoffs_per_kind() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    cutoffs = TenantRetention(30, 7, 90, 400).cutoffs(now, pending_upload_hours=24)
    assert cutoffs == {
        "conversations": now - timedelta(days=90),
        "files": now - timedelta(days=30),
        "artifacts": now - timedelta(days=7),
        "pending_files": now - timedelta(hours=24),
    }


def test_override_keys_that_name_no_tenant_are_reported() -> None:
    policy = RetentionPolicy(
        RetentionSettings(tenant_overrides={"acme": {"files_days": 5}, "acmee": {"files_days": 5}})
    )
    assert policy.unknown_tenants({"t1": "acme"}) == ["acmee"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"files_day": 5}, "unknown key 'files_day'"),
        ({"audit_days": 100}, "audit_days must be at least 183"),
        ({"conversations_days": 0}, "conversations_days must be at least 1"),
    ],
)
def test_bad_overrides_are_refused(override: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetentionSettings(tenant_overrides={"acme": override})


def test_schedule_settings_and_their_limits() -> None:
    settings = RetentionSettings()
    assert settings.interval_hours == 24
    assert settings.pending_upload_hours == 24
    assert RetentionSettings(interval_hours=0).interval_hours == 0
    with pytest.raises(ValidationError):
        RetentionSettings(interval_hours=-1)
    with pytest.raises(ValidationError):
        RetentionSettings(batch_size=0)


def test_overrides_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSIGEN_RETENTION__TENANT_OVERRIDES", '{"acme": {"files_days": 30}}')
    monkeypatch.setenv("OBSIGEN_RETENTION__INTERVAL_HOURS", "6")
    settings = Settings()
    assert settings.retention.tenant_overrides == {"acme": {"files_days": 30}}
    assert settings.retention.interval_hours == 6
