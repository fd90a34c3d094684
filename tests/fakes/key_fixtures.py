"""Session fixtures for the real key backends; conftests re-export them where needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_service
from tests.fakes.key_services import (
    MotoServer,
    SoftHsmToken,
    moto_available,
    moto_server,
    softhsm_available,
    softhsm_token,
)

SOFTHSM = "softhsm2 (Debian package softhsm2 and python-pkcs11)"
MOTO = "moto_server (moto[server] and boto3)"


_active_token: list[SoftHsmToken] = []


@pytest.fixture(scope="session")
def hsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    require_service(SOFTHSM, softhsm_available())
    # Each conftest that re-exports this fixture gets its own instance, but the PKCS#11
    # library reads SOFTHSM2_CONF only once per process: every instance shares one token.
    if _active_token:
        yield _active_token[0]
        return
    with softhsm_token(tmp_path_factory.mktemp("softhsm")) as token:
        _active_token.append(token)
        try:
            yield token
        finally:
            _active_token.clear()


@pytest.fixture(scope="session")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    require_service(MOTO, moto_available())
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server
