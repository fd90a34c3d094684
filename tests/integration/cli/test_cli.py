"""The ``obsigen`` console script, run as users run it: a subprocess on a fresh data dir."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest

from obsigen.authz.permissions import Role
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.identity.apikeys import authenticate_api_key

OBSIGEN = Path(sys.executable).parent / "obsigen"
KEY_SHAPE = re.compile(r"^obs_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Result]


def runner(data_dir: Path, **extra_env: str) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OBSIGEN_")}
    env["OBSIGEN_PATHS__DATA_DIR"] = str(data_dir)
    env.update(extra_env)

    def run(*args: str, stdin: str | None = None) -> Result:
        done = subprocess.run(
            [str(OBSIGEN), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=data_dir.parent,
            timeout=180,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


def ok(result: Result) -> Result:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def fails_cleanly(result: Result, message: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ")
    assert message in result.stderr


def one_json_object(result: Result) -> dict[str, Any]:
    ok(result)
    assert len(result.stdout.strip().splitlines()) == 1
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


@dataclass(frozen=True)
class Installation:
    data_dir: Path
    run: Run
    tenant: dict[str, Any]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """A migrated installation with the tenant ``acme``, shared by the tests that only add to it."""
    data_dir = tmp_path_factory.mktemp("cli") / "var"
    run = runner(data_dir)
    ok(run("migrate"))
    tenant = one_json_object(run("tenant", "create", "acme", "--json"))
    return Installation(data_dir, run, tenant)


def test_console_script_is_installed() -> None:
    assert OBSIGEN.is_file(), f"{OBSIGEN} missing: is the project installed in this venv?"


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    run = runner(data_dir)
    first = ok(run("migrate"))
    assert "up to date" in first.stdout
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert (data_dir / "obsigen.db").is_file()
    second = ok(run("migrate"))
    assert "up to date" in second.stdout


def test_bootstrap_prints_admin_credentials_once(tmp_path: Path) -> None:
    run = runner(tmp_path / "var")
    ok(run("migrate"))
    first = ok(run("bootstrap")).stdout
    password = re.search(r"^\s*password:\s*(\S+)\s*$", first, re.MULTILINE)
    totp = re.search(r"^\s*TOTP:\s*(\S+)\s*$", first, re.MULTILINE)
    assert password is not None, first
    assert len(password.group(1)) >= 12
    assert totp is not None, first
    assert totp.group(1).startswith("otpauth://totp/")
    assert "admin@obsigen.local" in first

    second = ok(run("bootstrap")).stdout
    assert "existing installation" in second
    assert password.group(1) not in second
    assert "otpauth://" not in second


def test_tenant_create_json(installed: Installation) -> None:
    tenant = installed.tenant
    assert re.fullmatch(r"[0-9a-f]{32}", tenant["id"])
    assert tenant["name"] == "acme"
    assert tenant["region"] == "eea"


def test_tenant_create_twice_fails_cleanly(installed: Installation) -> None:
    again = installed.run("tenant", "create", "acme", "--json")
    fails_cleanly(again, "exists")
    assert again.stdout == ""


def test_tenant_create_refuses_a_bad_region(installed: Installation) -> None:
    fails_cleanly(installed.run("tenant", "create", "globex", "--region", "mars"), "region")


async def _authenticate(data_dir: Path, key: str) -> Any:
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'obsigen.db'}")
    try:
        async with make_sessionmaker(engine)() as session:
            return await authenticate_api_key(session, key)
    finally:
        await engine.dispose()


async def test_apikey_create_json(installed: Installation) -> None:
    created = one_json_object(
        installed.run(
            "apikey", "create", "--tenant", "acme", "--name", "svc", "--role", "member", "--json"
        )
    )
    assert {"id", "key"} <= created.keys()
    assert created["key"].startswith("obs_")
    assert KEY_SHAPE.fullmatch(created["key"])
    assert created["expires_at"] is not None  # 90 days unless told otherwise

    # The printed key is a working credential for the tenant, with the role asked for.
    principal = await _authenticate(installed.data_dir, created["key"])
    assert principal is not None
    assert principal.tenant_id == installed.tenant["id"]
    assert principal.id == created["id"]
    assert principal.roles == frozenset({Role.MEMBER})


def test_apikey_create_plain_prints_the_key_alone_on_the_last_line(
    installed: Installation,
) -> None:
    result = ok(installed.run("apikey", "create", "--tenant", "acme", "--name", "svc2"))
    lines = result.stdout.rstrip("\n").splitlines()
    assert KEY_SHAPE.fullmatch(lines[-1])
    assert all("obs_" not in line for line in lines[:-1])


def test_apikey_create_for_an_unknown_tenant_fails_cleanly(installed: Installation) -> None:
    result = installed.run("apikey", "create", "--tenant", "nobody", "--name", "svc")
    fails_cleanly(result, "no tenant named 'nobody'")
    assert result.stdout == ""


def test_apikey_create_refuses_a_bad_lifetime(installed: Installation) -> None:
    result = installed.run(
        "apikey", "create", "--tenant", "acme", "--name", "svc", "--expires-in", "5y"
    )
    fails_cleanly(result, "90d")


def test_admin_user_gets_a_totp_enrolment(installed: Installation) -> None:
    created = one_json_object(
        installed.run(
            *shlex.split("user create --tenant acme --email a@acme.eu --role admin --json")
        )
    )
    assert created["email"] == "a@acme.eu"
    assert created["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.parse_uri(created["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    assert len(totp.secret) >= 32
    assert totp.issuer == "Obsigen (acme)"


def test_member_user_gets_no_totp_enrolment(installed: Installation) -> None:
    created = one_json_object(
        installed.run(
            *shlex.split("user create --tenant acme --email m@acme.eu --role member --json")
        )
    )
    assert created["role"] == "member"
    assert created["otpauth_uri"] is None


def test_user_with_password_from_stdin(installed: Installation) -> None:
    result = installed.run(
        "user", "create", "--tenant", "acme", "--email", "p@acme.eu", "--password-stdin",
        stdin="correct horse battery staple\n",
    )  # fmt: skip
    ok(result)
    assert "correct horse" not in result.stdout + result.stderr
    assert "p@acme.eu" in result.stdout


def test_too_short_password_fails_cleanly(installed: Installation) -> None:
    result = installed.run(
        "user", "create", "--tenant", "acme", "--email", "short@acme.eu", "--password-stdin",
        stdin="short\n",
    )  # fmt: skip
    fails_cleanly(result, "at least 12 characters")
    assert "short\n" not in result.stderr.replace("short@", "")


def test_unknown_role_fails_cleanly(installed: Installation) -> None:
    result = installed.run(
        "user", "create", "--tenant", "acme", "--email", "r@acme.eu", "--role", "root"
    )
    fails_cleanly(result, "unknown role 'root'")


def test_configuration_error_fails_cleanly(tmp_path: Path) -> None:
    run = runner(tmp_path / "var", OBSIGEN_SERVER__PORT="not-a-port")
    fails_cleanly(run("migrate"), "configuration error")


def test_doctor_json_lists_every_component_with_a_region(installed: Installation) -> None:
    reports = json.loads(ok(installed.run("doctor", "--json")).stdout)
    assert isinstance(reports, list)
    by_component = {r["component"]: r for r in reports}
    assert {"database", "inference", "audit sink"} <= by_component.keys()
    for report in reports:
        assert set(report) == {"component", "backend", "location", "reachable", "region", "holds"}
        assert report["region"], report
        assert report["holds"], report
    database = by_component["database"]
    assert database["backend"] == "sqlite (embedded)"
    assert database["reachable"] == "yes"
    assert str(installed.data_dir) in database["location"]
    assert by_component["inference"]["reachable"] == "yes"


def test_doctor_plain_names_the_database_backend(installed: Installation) -> None:
    out = ok(installed.run("doctor")).stdout
    assert out.startswith("database")
    assert "sqlite (embedded)" in out
    assert "region:" in out


def test_doctor_reports_an_unreachable_database_without_its_password(tmp_path: Path) -> None:
    run = runner(
        tmp_path / "var",
        OBSIGEN_STORAGE__DATABASE_URL="mysql+asyncmy://obsigen@127.0.0.1:9/obsigen",
        OBSIGEN_STORAGE__DATABASE_PASSWORD="env:DOCTOR_TEST_DB_PASSWORD",
        DOCTOR_TEST_DB_PASSWORD="hunter2-secret",  # pragma: allowlist secret
        OBSIGEN_STORAGE__REGION="de",
    )
    result = run("doctor")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    database = result.stdout.split("\ncache")[0]
    assert "mysql/mariadb" in database
    assert "reachable: no" in database
    assert "de (EEA)" in database
