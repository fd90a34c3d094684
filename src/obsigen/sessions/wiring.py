"""Builds the authentication services from settings: keys, tokens, sessions, second factors."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.config import Settings
from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.ephemeral.memory import MemoryStore
from obsigen.ephemeral.redis import RedisStore
from obsigen.identity.login import PasswordLogin
from obsigen.identity.webauthn import WebAuthn
from obsigen.keys.factory import make_key_provider
from obsigen.keys.interfaces import KeyProvider
from obsigen.sessions.authenticator import SessionAuthenticator
from obsigen.sessions.manager import SessionManager
from obsigen.sessions.store import make_session_store
from obsigen.tokens.access import TokenService
from obsigen.tokens.keyring import KeyRing


@dataclass(slots=True)
class AuthServices:
    keys: KeyProvider
    tokens: TokenService
    manager: SessionManager
    ephemeral: EphemeralStore
    password_login: PasswordLogin
    webauthn: WebAuthn
    authenticator: SessionAuthenticator

    async def start(self) -> None:
        # A fresh installation gets its first signing key here, inside the configured provider.
        await self.tokens.keyring.ensure_signing_key()

    async def aclose(self) -> None:
        await self.ephemeral.aclose()
        await self.keys.aclose()


def build_auth_services(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: Redis | None
) -> AuthServices:
    auth = settings.auth
    keys = make_key_provider(settings.keys.signing, settings.paths.data_dir)
    tokens = TokenService(
        KeyRing(keys, alg=auth.signing_alg),
        issuer=auth.issuer,
        audience=auth.audience,
        access_ttl_s=auth.access_ttl_s,
        clock_skew_s=auth.clock_skew_s,
    )
    manager = SessionManager(
        make_session_store(redis),
        refresh_ttl_s=auth.refresh_ttl_s,
        idle_timeout_s=auth.idle_timeout_s,
        session_max_s=auth.session_max_s,
    )
    ephemeral: EphemeralStore = RedisStore(redis) if redis is not None else MemoryStore()
    return AuthServices(
        keys=keys,
        tokens=tokens,
        manager=manager,
        ephemeral=ephemeral,
        password_login=PasswordLogin(
            ephemeral,
            max_failures=auth.max_failures,
            failure_window_s=auth.failure_window_s,
            lockout_s=auth.lockout_s,
        ),
        webauthn=WebAuthn(
            ephemeral,
            rp_id=auth.webauthn_rp_id,
            rp_name=auth.webauthn_rp_name,
            origins=auth.webauthn_origins,
        ),
        authenticator=SessionAuthenticator(tokens, manager, sessions),
    )
