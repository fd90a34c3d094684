"""``obsigen serve`` refuses to start, with a clear message and a non-zero exit, on each of the
start-up refusals of issue #9: an inline secret, a signing key past its maximum age, a store
outside the EEA without an allow entry, and CORS ``*`` with credentials.

Each runs the real console script as a subprocess on a fresh data directory. The port is one
nobody may listen on: a refusal that came too late would show up as a bind error instead.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

OBSIGEN = Path(sys.executable).parent / "obsigen"


def obsigen(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("OBSIGEN_")}
    environ["OBSIGEN_PATHS__DATA_DIR"] = str(data_dir)
    environ["OBSIGEN_SANDBOX__POOL_SIZE"] = "0"
    environ.update(env)
    return subprocess.run(
        [str(OBSIGEN), *args], env=environ, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip


def refused_at_load(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in result.stderr


def test_an_inline_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    value = "sk-" + secrets.token_hex(16)
    result = obsigen(tmp_path, "serve", "--port", "1", OBSIGEN_INFERENCE__API_KEY=value)
    refused_at_load(result, "configuration error", "inference.api_key must be a secret reference")
    assert value not in result.stderr + result.stdout


def test_a_password_inside_the_database_url_is_refused_by_field(tmp_path: Path) -> None:
    value = secrets.token_urlsafe(12)
    result = obsigen(
        tmp_path, "serve", "--port", "1",
        OBSIGEN_STORAGE__DATABASE_URL=f"mysql+asyncmy://obsigen:{value}@127.0.0.1:3306/obsigen",
    )  # fmt: skip
    refused_at_load(result, "storage.database_url holds a password", "storage.database_password")
    assert value not in result.stderr + result.stdout


def test_cors_wildcard_with_credentials_is_refused(tmp_path: Path) -> None:
    result = obsigen(
        tmp_path, "serve", "--port", "1",
        OBSIGEN_CORS__ALLOW_ORIGINS='["*"]', OBSIGEN_CORS__ALLOW_CREDENTIALS="true",
    )  # fmt: skip
    refused_at_load(result, "cors.allow_origins = ['*'] with cors.allow_credentials = true")


def test_a_non_eea_store_without_an_allow_entry_is_refused(tmp_path: Path) -> None:
    env = {"OBSIGEN_STORAGE__OBJECT_STORE": "s3://audit-copies?region=us-east-1"}
    result = obsigen(tmp_path, "serve", "--port", "1", **env)
    refused_at_load(result, "refusing to start", "object_store", "outside the EEA")
    # The allow entry the message asks for lets the same configuration past the check.
    allowed = obsigen(
        tmp_path, "doctor",
        OBSIGEN_RESIDENCY__ALLOW_TRANSFERS='["object_store: us - test copy, DPA on file"]',
        **env,
    )  # fmt: skip
    assert "REFUSED" not in allowed.stdout


@pytest.fixture
def aged_signing_key(tmp_path: Path) -> Path:
    """A migrated data dir whose only active signing key is 200 days old (maximum 180)."""
    data_dir = tmp_path / "var"
    for args in (("migrate",), ("keys", "rotate", "--kind", "signing")):
        done = obsigen(data_dir, *args)
        assert done.returncode == 0, done.stderr
    index_path = data_dir / "keys" / "index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    old = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    signing = [entry for entry in index["keys"].values() if entry["use"] == "sig"]
    assert signing
    for entry in signing:
        entry["created_at"] = old
    index_path.write_text(json.dumps(index), encoding="utf-8")
    return data_dir


def test_a_signing_key_past_its_maximum_age_stops_the_start(aged_signing_key: Path) -> None:
    result = obsigen(aged_signing_key, "serve", "--port", "1")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "refusing to start, credentials past their rotation age: signing_key" in output
    assert "(max 180)" in output
    assert "obsigen keys rotate --kind signing" in output
    # After the rotation the message asks for, the same data dir passes the check: doctor
    # reports the new key fresh and nothing blocks.
    assert obsigen(aged_signing_key, "keys", "rotate", "--kind", "signing").returncode == 0
    doctor = obsigen(aged_signing_key, "doctor")
    assert "refusing" not in doctor.stdout + doctor.stderr
