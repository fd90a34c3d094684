"""Every key provider, each on a real backend: files, a SoftHSM2 token, moto KMS on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.fakes.key_fixtures import hsm_token, kms_server
from tests.fakes.key_services import MotoServer, SoftHsmToken

from obsigen.keys import KeyProvider, make_key_provider

__all__ = ["hsm_token", "kms_server"]

PROVIDERS = ["software", "pkcs11", "awskms"]


@pytest.fixture(params=PROVIDERS)
def provider_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "pkcs11":
        token: SoftHsmToken = request.getfixturevalue("hsm_token")
        return token.uri
    if request.param == "awskms":
        server: MotoServer = request.getfixturevalue("kms_server")
        server.reset()  # moto keeps keys between clients: each test starts from none
        return server.uri
    return "software"


@pytest.fixture
async def provider(provider_uri: str, tmp_path: Path) -> AsyncIterator[KeyProvider]:
    made = make_key_provider(provider_uri, tmp_path)
    yield made
    await made.aclose()
