"""Secret references resolve; plain values, loose files and unsupported schemes are refused."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from obsigen.secretref import SecretRefError, check_reference, is_reference, resolve_secret


def _owner_only(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    value = secrets.token_urlsafe(16)
    monkeypatch.setenv("OBSIGEN_TEST_KEY", value)
    assert resolve_secret("env:OBSIGEN_TEST_KEY") == value


def test_owner_only_file_resolves_without_the_trailing_newline(tmp_path: Path) -> None:
    value = secrets.token_urlsafe(16)
    path = _owner_only(tmp_path / "key", value + "\n")
    assert resolve_secret(f"file:{path}") == value
    path.chmod(0o400)
    assert resolve_secret(f"file:{path}") == value


def test_a_symlink_to_an_owner_only_file_is_followed(tmp_path: Path) -> None:
    # Mounted secrets (Kubernetes) are links to the real file.
    target = _owner_only(tmp_path / "real", "linked")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert resolve_secret(f"file:{link}") == "linked"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_files_others_can_read_are_refused_naming_the_path(tmp_path: Path, mode: int) -> None:
    value = secrets.token_urlsafe(16)
    path = tmp_path / "loose"
    path.write_text(value)
    path.chmod(mode)
    with pytest.raises(SecretRefError, match="chmod 600") as raised:
        resolve_secret(f"file:{path}")
    assert str(path) in str(raised.value)
    assert value not in str(raised.value)


def test_a_directory_or_fifo_is_not_a_secret_file(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretRefError, match="not a regular file"):
        resolve_secret(f"file:{folder}")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    # Refused without blocking on a writer that never comes.
    with pytest.raises(SecretRefError, match="not a regular file"):
        resolve_secret(f"file:{fifo}")


def test_empty_means_no_secret() -> None:
    assert resolve_secret("") == ""


@pytest.mark.parametrize("value", ["sk-plain-value", "https://user:pw@host", "Bearer:abc"])
def test_plain_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="secrets must be references") as caught:
        resolve_secret(value)
    assert value not in str(caught.value)


def test_vault_is_refused_as_unsupported_in_this_build() -> None:
    with pytest.raises(SecretRefError, match="not supported in this build"):
        resolve_secret("vault:secret/data/x#key")


@pytest.mark.parametrize("ref", ["pkcs11:token=t;object=o", "awskms:arn:aws:kms:eu-west-1:1:key/x"])
def test_key_provider_references_are_not_resolved_here(ref: str) -> None:
    with pytest.raises(SecretRefError, match="key providers"):
        resolve_secret(ref)


def test_missing_targets_name_the_reference_only(tmp_path: Path) -> None:
    with pytest.raises(SecretRefError, match="OBSIGEN_TEST_UNSET"):
        resolve_secret("env:OBSIGEN_TEST_UNSET")
    with pytest.raises(SecretRefError, match="cannot read"):
        resolve_secret(f"file:{tmp_path / 'absent'}")
    with pytest.raises(SecretRefError, match="names no"):
        resolve_secret("env:")


def test_reference_checks() -> None:
    assert is_reference("env:X")
    assert is_reference("file:/x")
    assert is_reference("awssm:name")
    assert not is_reference("env:")
    assert not is_reference("vault:x")
    assert not is_reference("x")
    check_reference("some.field", "")
    check_reference("some.field", "awssm:arn:aws:secretsmanager:eu-west-1:1:secret:n#f")
    literal = secrets.token_hex(12)
    with pytest.raises(ValueError, match=r"some\.field must be a secret reference") as raised:
        check_reference("some.field", literal)
    assert literal not in str(raised.value)
    with pytest.raises(ValueError, match=r"some\.field: vault: references are not supported"):
        check_reference("some.field", "vault:kv/x#y")
