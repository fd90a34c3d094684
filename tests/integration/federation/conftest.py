"""The OpenID provider the OIDC tests sign in with: one per test session, on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.conftest import require_service
from tests.integration.federation.oidc_idp import (
    CLIENT_AUTH_ENV,
    OidcIdp,
    provider_available,
    running_idp,
)

# platform_settings leaves federation.public_url at its default.
REDIRECT_PREFIX = "http://127.0.0.1:8000/auth/oidc/"


@pytest.fixture(scope="session")
def oidc_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    require_service(
        "node with oidc-provider (npm ci --prefix tests/integration/federation/oidc_provider)",
        provider_available(),
    )
    with running_idp(tmp_path_factory.mktemp("oidc-idp"), REDIRECT_PREFIX) as idp:
        # The IdP's config names the secret by reference, as an admin would.
        previous = os.environ.get(CLIENT_AUTH_ENV)
        os.environ[CLIENT_AUTH_ENV] = idp.client_secret
        try:
            yield idp
        finally:
            if previous is None:
                os.environ.pop(CLIENT_AUTH_ENV, None)
            else:
                os.environ[CLIENT_AUTH_ENV] = previous
