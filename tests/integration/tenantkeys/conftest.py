"""Tenant keys on real databases (SQLite, MariaDB) and real KEK backends (files, SoftHSM2,
moto KMS on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.fakes.key_fixtures import hsm_token, kms_server
from tests.fakes.key_services import MotoServer, SoftHsmToken

from obsigen.keys import KeyProvider, make_key_provider

__all__ = ["hsm_token", "kms_server"]


@pytest.fixture(params=["software", "pkcs11", "awskms"])
async def kek_provider(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[KeyProvider]:
    uri = "software"
    if request.param == "pkcs11":
        token: SoftHsmToken = request.getfixturevalue("hsm_token")
        uri = token.uri
    elif request.param == "awskms":
        server: MotoServer = request.getfixturevalue("kms_server")
        server.reset()
        uri = server.uri
    made = make_key_provider(uri, tmp_path)
    yield made
    await made.aclose()
