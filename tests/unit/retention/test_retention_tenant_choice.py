"""A tenant's stored retention choice between the operator's default and override: precedence,
clamping into narrowed limits, and the limits' own validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from obsigen.config import RetentionSettings
from obsigen.retention.policy import RetentionPolicy, TenantRetention


def test_a_stored_choice_beats_the_default_for_its_tenant_only() -> None:
    policy = RetentionPolicy(RetentionSettings(), {"t1": {"files_days": 30, "audit_days": 900}})
    assert policy.for_tenant("t1", "acme") == TenantRetention(
        files_days=30, artifacts_days=90, conversations_days=365, audit_days=900
    )
    assert policy.for_tenant("t2", "other") == policy.defaults
    choice = policy.explain("t1", "acme")["files_days"]
    assert (choice.days, choice.source, choice.stored, choice.locked) == (30, "tenant", 30, False)


def test_an_operator_override_beats_the_stored_choice() -> None:
    settings = RetentionSettings(tenant_overrides={"acme": {"files_days": 7}})
    policy = RetentionPolicy(settings, {"t1": {"files_days": 30, "conversations_days": 60}})
    rules = policy.for_tenant("t1", "acme")
    assert rules.files_days == 7
    assert rules.conversations_days == 60
    files = policy.explain("t1", "acme")["files_days"]
    assert (files.days, files.source, files.stored, files.locked) == (7, "operator", 30, True)


def test_a_stored_choice_outside_narrowed_limits_is_clamped() -> None:
    settings = RetentionSettings.model_validate(
        {"tenant_limits": {"files_days": {"min": 10, "max": 100}}}
    )
    assert RetentionPolicy(settings, {"t": {"files_days": 500}}).for_tenant("t").files_days == 100
    assert RetentionPolicy(settings, {"t": {"files_days": 2}}).for_tenant("t").files_days == 10


def test_the_audit_floor_holds_for_stored_choices() -> None:
    # A row written by hand (or before a bug fix) below six months still keeps six months.
    assert (
        RetentionPolicy(RetentionSettings(), {"t": {"audit_days": 30}}).for_tenant("t").audit_days
        == 183
    )


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"audit_days": {"min": 100, "max": 400}}, "greater than or equal to 183"),
        ({"files_days": {"min": 50, "max": 10}}, "min \\(50\\) is above max \\(10\\)"),
        ({"files_days": {"min": 0, "max": 10}}, "greater than or equal to 1"),
        ({"backups_days": {"min": 1, "max": 10}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_limits_are_refused_at_start_up(limits: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetentionSettings.model_validate({"tenant_limits": limits})
