"""Bearer access token -> principal: signature and claims, then the live session, then roles.

Per request this costs one local signature check (public keys are cached), one session-store
round trip (revocation, idle timer: O(1)) and the role lookup in the tenant database, so a
revoked session or a revoked role stops working at the next request, not at token expiry.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.authz.principal import Principal
from obsigen.identity.principals import load_principal
from obsigen.sessions.manager import SessionManager
from obsigen.tokens.access import InvalidToken, TokenService

log = logging.getLogger(__name__)


class SessionAuthenticator:
    def __init__(
        self,
        tokens: TokenService,
        manager: SessionManager,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self._tokens = tokens
        self._manager = manager
        self._sessions = sessions

    async def authenticate(self, token: str) -> Principal | None:
        try:
            claims = await self._tokens.verify(token)
        except InvalidToken:
            return None
        record = await self._manager.touch(claims.session_id)
        if record is None:
            return None
        if record.tenant_id != claims.tenant_id or record.user_id != claims.subject:
            # A token naming a session that belongs to someone else: forged claims or a bug.
            log.warning("access token and session disagree on tenant or user")
            return None
        async with self._sessions() as session:
            return await load_principal(
                session,
                claims.tenant_id,
                "user",
                claims.subject,
                mfa=claims.mfa,
                session_id=claims.session_id,
                amr=claims.amr,
            )
