"""What the web edge needs from the session layer: a bearer token in, a principal out."""

from __future__ import annotations

from typing import Protocol

from obsigen.authz.principal import Principal


class BearerAuthenticator(Protocol):
    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid access token of a live session; None otherwise.

        Raises ``StoreUnavailable`` (503) when the session store cannot be asked: an
        unverifiable revocation state never counts as "not revoked".
        """
        ...
