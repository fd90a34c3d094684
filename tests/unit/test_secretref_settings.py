"""A config with a secret written inline is refused at load; the error names the field only."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from obsigen.config import Settings, load_settings


def _literal() -> str:
    # Made at test time so the repository holds nothing that looks like a credential.
    return "lit" + secrets.token_hex(12)


def _cases(value: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("inference.api_key", {"inference": {"api_key": value}}),
        (
            "tls_key_password",
            {"server": {"tls_cert": "/c.pem", "tls_key": "/k.pem", "tls_key_password": value}},
        ),
        ("keys.signing pin", {"keys": {"signing": f"pkcs11:token=t;pin={value}"}}),
        ("keys.kek master_key", {"keys": {"kek": f"software:master_key={value}"}}),
        (
            "keys.signing secret_access_key",
            {
                "keys": {
                    "signing": "awskms:region=eu-central-1;access_key_id=env:A;"
                    f"secret_access_key={value}"
                }
            },
        ),
        (
            "storage.object_store access_key_id",
            {"storage": {"object_store": f"s3://b?access_key_id={value}&secret_access_key=env:S"}},
        ),
    ]


@pytest.mark.parametrize("index", range(len(_cases(""))))
def test_a_literal_in_each_secret_field_is_refused(index: int) -> None:
    value = _literal()
    field, fields = _cases(value)[index]
    with pytest.raises(ValidationError) as raised:
        Settings(**fields)
    assert field in str(raised.value)
    assert value not in str(raised.value)
    assert value not in repr(raised.value)


@pytest.mark.parametrize("index", range(len(_cases(""))))
def test_references_are_accepted_in_each_secret_field(index: int) -> None:
    for ref in ("env:OBSIGEN_SOME_VAR", "file:/run/secrets/x", "awssm:prod/obsigen#key"):
        if "tls_key_password" in _cases("")[index][0] and ref.startswith("awssm:"):
            continue  # ServerSettings takes env:/file: only (docs/secrets.md)
        _, fields = _cases(ref)[index]
        Settings(**fields)


def test_vault_is_refused_at_load_as_unsupported() -> None:
    with pytest.raises(ValidationError, match="not supported in this build"):
        Settings(inference={"api_key": "vault:secret/data/obsigen#api_key"})


def test_a_literal_from_a_toml_file_or_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = _literal()
    config = tmp_path / "obsigen.toml"
    config.write_text(f'[inference]\napi_key = "{value}"\n')
    with pytest.raises(ValidationError, match=r"inference\.api_key") as raised:
        load_settings(config)
    assert value not in str(raised.value)

    monkeypatch.setenv("OBSIGEN_KEYS__SIGNING", f"pkcs11:token=t;pin={value}")
    with pytest.raises(ValidationError, match=r"keys\.signing pin") as raised:
        Settings()
    assert value not in str(raised.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(inference={"api_key": _literal()}, keys={"kek": f"pkcs11:pin={_literal()}"})
    assert "inference.api_key" in str(raised.value)
    assert "keys.kek pin" in str(raised.value)


def test_secrets_section_defaults_and_bounds() -> None:
    settings = Settings()
    assert settings.secrets.max_age_days.signing_key == 180
    assert settings.secrets.max_age_days.db_credential == 90
    assert settings.secrets.warn_fraction == 0.8
    with pytest.raises(ValidationError):
        Settings(secrets={"warn_fraction": 1.5})
    dated = Settings(secrets={"db_credential_rotated_at": "2026-01-01"})
    assert str(dated.secrets.db_credential_rotated_at) == "2026-01-01"
