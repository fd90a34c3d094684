"""``obsigen user create`` / ``apikey create`` and the RBAC rules: every built-in role for users
(TOTP for those that need MFA), no administrative roles for keys, lifetimes within the maximum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.integration.cli.test_cli import Run, fails_cleanly, ok, one_json_object, runner


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    data_dir = tmp_path_factory.mktemp("cli-rbac") / "var"
    run = runner(data_dir, OBSIGEN_AUTH__APIKEY_MAX_DAYS="30")
    ok(run("migrate"))
    ok(run("tenant", "create", "initech"))
    return run


@pytest.mark.parametrize(
    ("role", "enrolled"),
    [("owner", True), ("auditor", True), ("viewer", False)],
)
def test_user_create_takes_every_builtin_role(run: Run, role: str, enrolled: bool) -> None:
    created = one_json_object(
        run("user", "create", "--tenant", "initech", "--email", f"{role}@initech.eu",
            "--role", role, "--json")
    )  # fmt: skip
    assert created["role"] == role
    assert (created["otpauth_uri"] is not None) is enrolled


@pytest.mark.parametrize("role", ["admin", "owner", "auditor"])
def test_apikey_create_refuses_administrative_roles(run: Run, role: str) -> None:
    result = run("apikey", "create", "--tenant", "initech", "--name", "svc", "--role", role)
    fails_cleanly(result, "interactive session with MFA")
    assert "obs_" not in result.stdout


def test_apikey_lifetime_defaults_within_and_is_capped_by_the_maximum(run: Run) -> None:
    created = one_json_object(
        run("apikey", "create", "--tenant", "initech", "--name", "svc", "--role", "viewer",
            "--json")
    )  # fmt: skip
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.now(UTC)
    # 90 days unless told otherwise, but never beyond auth.apikey_max_days (30 here).
    assert timedelta(days=29) < lifetime <= timedelta(days=30)

    too_long = run(
        "apikey", "create", "--tenant", "initech", "--name", "svc", "--expires-in", "31d"
    )
    fails_cleanly(too_long, "at most 30 days")


def test_apikey_create_for_an_unknown_role_fails_cleanly(run: Run) -> None:
    result = run("apikey", "create", "--tenant", "initech", "--name", "svc", "--role", "root")
    fails_cleanly(result, "unknown role 'root'")
