"""server.tls_* settings: file references only, both or neither, passwords as references."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from obsigen.config import ServerSettings


def test_tls_is_off_by_default() -> None:
    server = ServerSettings()
    assert not server.tls_enabled
    assert server.hsts_max_age_s == 31_536_000


@pytest.mark.parametrize(
    ("cert", "key"),
    [("/etc/obsigen/tls.crt", "/etc/obsigen/tls.key"), ("file:/a/cert.pem", "file:./key.pem")],
)
def test_paths_and_file_references_are_accepted(cert: str, key: str) -> None:
    assert ServerSettings(tls_cert=cert, tls_key=key).tls_enabled


@pytest.mark.parametrize("fields", [{"tls_cert": "/a/cert.pem"}, {"tls_key": "/a/key.pem"}])
def test_cert_and_key_go_together(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="must be set together"):
        ServerSettings(**fields)


@pytest.mark.parametrize("ref", ["env:TLS_KEY", "vault:secret/tls#key", "https://x/key.pem"])
def test_other_reference_kinds_are_refused_for_files(ref: str) -> None:
    with pytest.raises(ValidationError, match="file path or a file: reference"):
        ServerSettings(tls_cert="/a/cert.pem", tls_key=ref)


def test_an_empty_file_reference_is_refused() -> None:
    with pytest.raises(ValidationError, match="names no file"):
        ServerSettings(tls_cert="file:", tls_key="/a/key.pem")


def test_a_literal_key_password_is_refused() -> None:
    with pytest.raises(ValidationError, match="secret reference"):
        ServerSettings(tls_cert="/c.pem", tls_key="/k.pem", tls_key_password="hunter2")


def test_a_key_password_without_a_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="tls_key is not"):
        ServerSettings(tls_key_password="env:TLS_KEY_PASSWORD")


def test_a_key_password_reference_is_accepted() -> None:
    server = ServerSettings(tls_cert="/c.pem", tls_key="/k.pem", tls_key_password="env:PW")
    assert server.tls_key_password == "env:PW"
