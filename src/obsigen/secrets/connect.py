"""Store passwords from references, read each time a connection opens (docs/secrets.md).

``storage.database_url`` and ``storage.redis_url`` may not carry a password; the password is
``storage.database_password`` / ``storage.redis_password``, a reference resolved here on every
new connection rather than once at start-up, so a password rotated in Secrets Manager (or a
remounted secret file) is picked up by the next connection without a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.credentials import CredentialProvider
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from obsigen.secretref import resolve_secret


def inject_database_password(engine: AsyncEngine, ref: str) -> None:
    """Give every new connection of ``engine`` the password behind ``ref``."""

    def on_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = resolve_secret(ref)

    event.listen(engine.sync_engine, "do_connect", on_connect)


class ReferenceCredentials(CredentialProvider):
    """Redis AUTH credentials: the URL's user name (if any) and the password behind a reference."""

    def __init__(self, username: str, ref: str) -> None:
        self._username = username
        self._ref = ref

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = resolve_secret(self._ref)
        return (self._username, password) if self._username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        # A Secrets Manager read is a blocking HTTP call: keep it off the event loop.
        return await asyncio.to_thread(self.get_credentials)


def redis_connection(url: str, ref: str) -> tuple[str, dict[str, Any]]:
    """``url`` and the keyword arguments for ``from_url`` that authenticate with ``ref``.

    redis-py refuses a user name in the URL together with a credential provider, so the user
    name moves from the URL into the provider.
    """
    if not ref:
        return url, {}
    parts = urlsplit(url)
    username = unquote(parts.username or "")
    host = parts.netloc.rpartition("@")[2]
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, {"credential_provider": ReferenceCredentials(username, ref)}
