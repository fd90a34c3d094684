"""One key of a provider seen as a plain signer: sign bytes, a key id, a public JWK.

This is the shape of the audit chain's ``Signer`` (``obsigen.audit.signing``: ``key_id``,
``algorithm``, ``sign``, ``verify``, ``public_jwk``), so audit checkpoints can be signed by the
same software key, HSM or KMS as session tokens. The methods are coroutines: an HSM or KMS
call must not block the event loop.
"""

from __future__ import annotations

from obsigen.keys.errors import KeyNotFound
from obsigen.keys.interfaces import KeyProvider, KeyState, SigningAlg


class ProviderSigner:
    def __init__(self, provider: KeyProvider, kid: str, alg: SigningAlg) -> None:
        self._provider = provider
        self._kid = kid
        self._alg: SigningAlg = alg

    @property
    def key_id(self) -> str:
        return self._kid

    @property
    def algorithm(self) -> SigningAlg:
        return self._alg

    async def sign(self, data: bytes) -> bytes:
        return await self._provider.sign(self._kid, data)

    async def verify(self, data: bytes, signature: bytes) -> bool:
        return await self._provider.verify(self._kid, data, signature)

    async def public_jwk(self) -> dict[str, str]:
        return await self._provider.public_jwk(self._kid)

    @classmethod
    async def current(cls, provider: KeyProvider) -> ProviderSigner:
        """The newest active signing key of ``provider``: the one that signs new things."""
        active = [
            info
            for info in await provider.list_keys()
            if info.use == "sig" and info.state is KeyState.ACTIVE
        ]
        if not active:
            raise KeyNotFound("no active signing key: create one (obsigen keys rotate)")
        newest = active[-1]
        alg: SigningAlg = "ES256" if newest.alg == "ES256" else "RS256"
        return cls(provider, newest.kid, alg)
