"""Secret references resolve; plain values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from obsigen.secretref import SecretRefError, resolve_secret


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSIGEN_TEST_KEY", "s3cr3t")
    assert resolve_secret("env:OBSIGEN_TEST_KEY") == "s3cr3t"


def test_file_reference_drops_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    assert resolve_secret(f"file:{secret}") == "from-file"


def test_empty_means_no_secret() -> None:
    assert resolve_secret("") == ""


@pytest.mark.parametrize("value", ["sk-plain-value", "https://user:pw@host", "Bearer:abc"])
def test_plain_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="secrets must be references") as caught:
        resolve_secret(value)
    assert value not in str(caught.value)


def test_key_provider_references_are_not_resolved_here() -> None:
    with pytest.raises(SecretRefError, match="key providers"):
        resolve_secret("vault:secret/data/x#key")


def test_missing_targets_name_the_reference_only(tmp_path: Path) -> None:
    with pytest.raises(SecretRefError, match="OBSIGEN_TEST_UNSET"):
        resolve_secret("env:OBSIGEN_TEST_UNSET")
    with pytest.raises(SecretRefError, match="cannot read"):
        resolve_secret(f"file:{tmp_path / 'absent'}")
