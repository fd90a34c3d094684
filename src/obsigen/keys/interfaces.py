"""One interface for every place a key can live: a local encrypted file, a PKCS#11 token, a KMS.

Private and key-encryption keys are created inside the provider and never leave it; callers
get signatures, wrapped data keys and public JWKs. The JWT layer, the audit signer and
envelope encryption all talk to a ``KeyProvider`` and never learn which backend is configured.

Key states (``KeyState``):

- ``active``: signs and verifies; a KEK wraps and unwraps.
- ``verify-only``: verifies but refuses to sign; a KEK unwraps but refuses to wrap. This is
  the overlap after a rotation, while tokens or data keys made with the old key still exist.
- ``retired``: refuses everything. Terminal: a retired key never comes back.

A key whose ``retire_after`` has passed counts as retired from that instant, without any job
having to run, so "keep verifying until the last token expires" needs no scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

SigningAlg = Literal["ES256", "RS256"]
KeyAlg = Literal["ES256", "RS256", "A256GCM"]
KeyUse = Literal["sig", "enc"]
SIGNING_ALGS: frozenset[str] = frozenset({"ES256", "RS256"})


class KeyState(StrEnum):
    ACTIVE = "active"
    VERIFY_ONLY = "verify-only"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a provider says about one key; never any key material."""

    kid: str
    alg: KeyAlg
    use: KeyUse
    created_at: datetime
    state: KeyState
    retire_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class DataKey:
    """A fresh data key for envelope encryption: use ``plaintext``, store only ``wrapped``."""

    plaintext: bytes
    wrapped: bytes


@runtime_checkable
class KeyProvider(Protocol):
    name: str

    # --- signing keys ------------------------------------------------------------------------

    async def create_signing_key(self, alg: SigningAlg) -> KeyInfo:
        """Generate a key pair inside the provider; the private half is never exported."""
        ...

    async def sign(self, kid: str, message: bytes) -> bytes:
        """JWS signature of ``message``: ES256 is raw r||s (64 bytes), RS256 PKCS#1 v1.5."""
        ...

    async def verify(self, kid: str, message: bytes, signature: bytes) -> bool:
        """True for a good signature, False for a bad one; raises for unknown or retired keys."""
        ...

    async def public_jwk(self, kid: str) -> dict[str, str]:
        """The public key as a JWK (RFC 7517) with ``kid``, ``alg`` and ``use``.

        Given for any state: whoever publishes a JWKS filters by state (``list_keys``); an
        auditor checking old signatures offline still needs a retired key's public half.
        """
        ...

    # --- key-encryption keys -----------------------------------------------------------------

    async def create_kek(self) -> KeyInfo:
        """Generate an AES-256 key-encryption key inside the provider."""
        ...

    async def wrap(self, kek_id: str, data_key: bytes, context: dict[str, str]) -> bytes:
        """Encrypt ``data_key`` under the KEK, bound to ``context`` (authenticated, not secret)."""
        ...

    async def unwrap(self, kek_id: str, wrapped: bytes, context: dict[str, str]) -> bytes:
        """Reverse of ``wrap``; raises ``UnwrapFailed`` when bytes or context do not match."""
        ...

    async def new_data_key(self, kek_id: str, context: dict[str, str]) -> DataKey:
        """A random 256-bit data key, with its wrapped form (KMS: one GenerateDataKey call)."""
        ...

    # --- lifecycle -----------------------------------------------------------------------------

    async def get_key(self, kid: str) -> KeyInfo: ...

    async def list_keys(self) -> list[KeyInfo]:
        """Every key this provider manages, signing keys and KEKs, oldest first."""
        ...

    async def set_state(
        self, kid: str, state: KeyState, retire_after: datetime | None = None
    ) -> KeyInfo:
        """Move a key along active -> verify-only -> retired; ``retire_after`` sets (or clears)
        the instant from which it counts as retired."""
        ...

    async def aclose(self) -> None: ...
