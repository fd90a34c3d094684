"""Configuration errors are caught early and never echo a value that could be a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes.key_services import SoftHsmToken

from obsigen.keys import KeyConfigError, make_key_provider


@pytest.mark.parametrize(
    "uri",
    [
        "vault:transit/keys/obsigen",
        "hsm",
        "",
        "software:master=env:X",
        "pkcs11:token=t",
        "pkcs11:pin=env:X",
        "pkcs11:token=t;pin=env:X;cache_ttl=soon",
        "awskms:endpoint_url=http://127.0.0.1:1",
        "awskms:region=eu-central-1;access_key_id=env:A",
        "awskms:region=eu-central-1;cache_ttl=-1",
        "awskms:region=eu-central-1;endpoint",
    ],
)
def test_bad_uris_are_refused(uri: str, tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError):
        make_key_provider(uri, tmp_path)


def test_unknown_parameter_is_named_but_its_value_is_not(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError) as caught:
        make_key_provider("pkcs11:token=t;pim=123456", tmp_path)
    assert "pim" in str(caught.value)
    assert "123456" not in str(caught.value)


async def test_a_literal_pin_is_refused(hsm_token: SoftHsmToken, tmp_path: Path) -> None:
    provider = make_key_provider(f"pkcs11:token={hsm_token.label};pin={hsm_token.pin}", tmp_path)
    with pytest.raises(KeyConfigError) as caught:
        await provider.list_keys()
    assert hsm_token.pin not in str(caught.value)
    await provider.aclose()


async def test_wrong_pin_and_unknown_token_are_config_errors(
    hsm_token: SoftHsmToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSIGEN_TEST_WRONG_PIN", "not-the-pin")
    for uri in (
        f"pkcs11:token={hsm_token.label};pin=env:OBSIGEN_TEST_WRONG_PIN",
        hsm_token.uri.replace(hsm_token.label, "no-such-token"),
    ):
        provider = make_key_provider(uri, tmp_path)
        with pytest.raises(KeyConfigError):
            await provider.list_keys()
        await provider.aclose()
