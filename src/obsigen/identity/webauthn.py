"""WebAuthn security keys and passkeys as a second factor (py_webauthn does the verification).

Each ceremony's challenge is kept in the shared store under the user's id for
``CHALLENGE_TTL_S`` and taken (read and deleted in one step) by the answer, so it is good for
one answer by that user only, whether the answer is accepted or not. Only the public key, the
credential id and the signature counter are stored; attestation is not requested ("none"),
since the platform does not restrict which authenticator models may be used.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from obsigen.db.auth_models import WebAuthnCredential
from obsigen.db.base import utcnow
from obsigen.db.models import User
from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.errors import InvalidInput

CHALLENGE_TTL_S = 300
MAX_CREDENTIAL_ID_BYTES = 1023  # the WebAuthn limit; the column is sized for it

log = logging.getLogger(__name__)

_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)

# What a malformed or forged answer can raise inside py_webauthn: its own errors, bad
# base64url (binascii.Error is a ValueError) and wrongly typed JSON members.
_REFUSALS = (WebAuthnException, ValueError, TypeError, KeyError)


def credential_hash(raw_id: bytes) -> str:
    """The unique key of a credential id (MariaDB cannot index the id itself)."""
    return hashlib.sha256(raw_id).hexdigest()


def _descriptor(credential: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    # Transports a newer browser reported but this library does not know are left out.
    transports = [AuthenticatorTransport(t) for t in credential.transports if t in _TRANSPORTS]
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(credential.credential_id), transports=transports or None
    )


class WebAuthn:
    def __init__(
        self, store: EphemeralStore, *, rp_id: str, rp_name: str, origins: Sequence[str]
    ) -> None:
        if not rp_id or not rp_name or not origins:
            raise ValueError("WebAuthn needs a relying party id, a name and at least one origin")
        self._store = store
        self._rp_id = rp_id
        self._rp_name = rp_name
        self._origins = list(origins)

    @staticmethod
    def _user_handle(user: User) -> bytes:
        # The random row id: the spec asks for a handle that carries no personal data.
        return user.id.encode()

    async def _credentials_of(self, session: AsyncSession, user: User) -> list[WebAuthnCredential]:
        rows = await session.scalars(
            select(WebAuthnCredential)
            .where(
                WebAuthnCredential.user_id == user.id,
                WebAuthnCredential.tenant_id == user.tenant_id,
            )
            .order_by(WebAuthnCredential.created_at)
        )
        return list(rows)

    async def registration_options(self, session: AsyncSession, user: User) -> dict[str, Any]:
        """PublicKeyCredentialCreationOptions as JSON for ``navigator.credentials.create``."""
        existing = await self._credentials_of(session, user)
        options = generate_registration_options(
            rp_id=self._rp_id,
            rp_name=self._rp_name,
            user_id=self._user_handle(user),
            user_name=user.email,
            timeout=CHALLENGE_TTL_S * 1000,
            # A second factor, not a passwordless login: no need to fill the key's storage.
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[_descriptor(c) for c in existing],
        )
        await self._store.set(_register_key(user), options.challenge, CHALLENGE_TTL_S)
        return options_to_json_dict(options)

    async def register(
        self, session: AsyncSession, user: User, credential: dict[str, Any], name: str
    ) -> WebAuthnCredential:
        """Verifies the authenticator's answer to the pending registration and stores the key."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidInput("authenticator name: 1-100 characters")
        challenge = await self._store.take(_register_key(user))
        if challenge is None:
            raise InvalidInput("no registration is pending (or it expired): ask for new options")
        try:
            parsed = parse_registration_credential_json(credential)
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self._rp_id,
                expected_origin=self._origins,
            )
        except _REFUSALS as exc:
            log.info("WebAuthn registration refused for user %s: %s", user.id, exc)
            raise InvalidInput("the authenticator's answer was not accepted") from exc
        if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
            raise InvalidInput("the credential id is too long")
        digest = credential_hash(verified.credential_id)
        taken = await session.scalar(
            select(WebAuthnCredential.id).where(WebAuthnCredential.credential_hash == digest)
        )
        if taken is not None:
            raise InvalidInput("this authenticator is already registered")
        row = WebAuthnCredential(
            tenant_id=user.tenant_id,
            user_id=user.id,
            credential_id=bytes_to_base64url(verified.credential_id),
            credential_hash=digest,
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            transports=[t.value for t in parsed.response.transports or []],
            name=name,
        )
        session.add(row)
        await session.flush()
        return row

    async def authentication_options(self, session: AsyncSession, user: User) -> dict[str, Any]:
        """PublicKeyCredentialRequestOptions as JSON for ``navigator.credentials.get``."""
        existing = await self._credentials_of(session, user)
        if not existing:
            raise InvalidInput("no security key is registered for this account")
        options = generate_authentication_options(
            rp_id=self._rp_id,
            timeout=CHALLENGE_TTL_S * 1000,
            allow_credentials=[_descriptor(c) for c in existing],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        await self._store.set(_auth_key(user), options.challenge, CHALLENGE_TTL_S)
        return options_to_json_dict(options)

    async def authenticate(
        self, session: AsyncSession, user: User, credential: dict[str, Any]
    ) -> bool:
        """True when one of ``user``'s authenticators signed the pending challenge."""
        challenge = await self._store.take(_auth_key(user))
        if challenge is None:
            return False
        try:
            parsed = parse_authentication_credential_json(credential)
        except _REFUSALS as exc:
            log.info("WebAuthn assertion refused for user %s: %s", user.id, exc)
            return False
        handle = parsed.response.user_handle
        if handle is not None and handle != self._user_handle(user):
            log.info("WebAuthn assertion refused for user %s: another user's handle", user.id)
            return False
        # Looked up under this user: a valid signature by someone else's key proves nothing.
        row = await session.scalar(
            select(WebAuthnCredential).where(
                WebAuthnCredential.credential_hash == credential_hash(parsed.raw_id),
                WebAuthnCredential.user_id == user.id,
                WebAuthnCredential.tenant_id == user.tenant_id,
            )
        )
        if row is None:
            log.info("WebAuthn assertion refused for user %s: unknown credential", user.id)
            return False
        try:
            # Also refuses a counter that did not grow, when either side has ever reported one:
            # the sign of a cloned authenticator (or a replayed answer).
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self._rp_id,
                expected_origin=self._origins,
                credential_public_key=base64url_to_bytes(row.public_key),
                credential_current_sign_count=row.sign_count,
            )
        except _REFUSALS as exc:
            log.info("WebAuthn assertion refused for user %s: %s", user.id, exc)
            return False
        row.sign_count = verified.new_sign_count
        row.last_used_at = utcnow()
        await session.flush()
        return True


def _register_key(user: User) -> str:
    return f"webauthn:register:{user.id}"


def _auth_key(user: User) -> str:
    return f"webauthn:auth:{user.id}"
