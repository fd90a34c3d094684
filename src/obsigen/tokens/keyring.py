"""Our signing keys seen from the token layer.

Signing goes through the key provider, so with an HSM or KMS the private key never leaves
it. Verification is local: the provider's key list is cached for ``cache_ttl_s`` and each
key's public half, built from ``provider.public_jwk()``, for as long as the process runs (a
kid's public key never changes). A token check thus costs no HSM or KMS round trip.

What the cache means for state changes: a key whose ``retire_after`` passes stops verifying
at that instant (checked against the wall clock on every lookup); a state set by hand
(``set_state``, ``obsigen keys retire``) shows within ``cache_ttl_s`` or at ``refresh()``.

A kid we do not know makes the ring re-read the key list (a key made by another process
since the last read), but at most once per ``unknown_kid_refresh_s``: a flood of tokens with
random kids cannot turn into a flood of HSM or KMS calls. Kids of the wrong shape never
reach the provider at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from obsigen.keys.common import Clock, utcnow
from obsigen.keys.errors import KeyNotFound
from obsigen.keys.interfaces import KeyInfo, KeyProvider, KeyState, SigningAlg
from obsigen.tokens.jws import KID_RE, MalformedToken, Verifier

log = logging.getLogger(__name__)

UNKNOWN_KID_REFRESH_S = 5.0


class KeyRing:
    """Our signing keys seen from the token layer: signs through the provider (HSM/KMS: the
    private key never leaves it), verifies locally with cached public keys (fast, no HSM
    round trip per request), publishes the JWKS."""

    def __init__(
        self,
        provider: KeyProvider,
        *,
        alg: SigningAlg = "ES256",
        cache_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        unknown_kid_refresh_s: float = UNKNOWN_KID_REFRESH_S,
        now: Clock = utcnow,
    ) -> None:
        if alg not in ("ES256", "RS256"):
            raise ValueError(f"signing algorithm {alg!r} is not allowed (ES256, RS256)")
        if cache_ttl_s < 0 or unknown_kid_refresh_s < 0:
            raise ValueError("cache times must not be negative")
        self._provider = provider
        self._alg: SigningAlg = alg
        self._cache_ttl_s = cache_ttl_s
        self._unknown_refresh_s = unknown_kid_refresh_s
        self._clock = clock  # monotonic: cache ages
        self._now = now  # wall clock: retire_after
        self._lock = asyncio.Lock()
        self._keys: dict[str, KeyInfo] | None = None
        self._loaded_at = 0.0
        # A provider that is down is not asked again on every request either.
        self._failed_at: float | None = None
        self._create_lock = asyncio.Lock()
        self._verifiers: dict[str, Verifier] = {}

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    @property
    def alg(self) -> SigningAlg:
        return self._alg

    # --- key list -------------------------------------------------------------------------------

    async def _load(self, max_age_s: float) -> dict[str, KeyInfo]:
        """The signing keys, re-read from the provider when the copy is older than max_age_s."""
        if self._keys is not None and self._clock() - self._loaded_at < max_age_s:
            return self._keys
        async with self._lock:
            # Whoever waited on the lock may find the list just read by the holder.
            if self._keys is not None and self._clock() - self._loaded_at < max_age_s:
                return self._keys
            if (
                self._keys is not None
                and self._failed_at is not None
                and self._clock() - self._failed_at < self._unknown_refresh_s
            ):
                return self._keys  # the provider failed moments ago: do not ask it again yet
            try:
                infos = await self._provider.list_keys()
            except Exception:
                if self._keys is None:
                    raise
                self._failed_at = self._clock()
                log.warning("key list could not be re-read; using the cached one", exc_info=True)
                return self._keys
            self._failed_at = None
            self._keys = {info.kid: info for info in infos if info.use == "sig"}
            self._loaded_at = self._clock()
            return self._keys

    async def refresh(self) -> None:
        """Re-read the key list now (after a rotation or retirement made in this process)."""
        await self._load(-1.0)

    def _usable(self, info: KeyInfo) -> bool:
        if info.state is KeyState.RETIRED:
            return False
        return info.retire_after is None or self._now() < info.retire_after

    def _current(self, keys: dict[str, KeyInfo]) -> KeyInfo | None:
        active = [
            info
            for info in keys.values()
            if info.alg == self._alg and info.state is KeyState.ACTIVE and self._usable(info)
        ]
        # Providers list keys oldest first (created_at, then kid): the last is the newest.
        return active[-1] if active else None

    # --- signing --------------------------------------------------------------------------------

    async def ensure_signing_key(self) -> KeyInfo:
        """The key that signs now: the newest active key of ``alg``, created if there is none."""
        current = self._current(await self._load(self._cache_ttl_s))
        if current is not None:
            return current
        async with self._create_lock:
            # A caller that waited here finds the key the holder made in the refreshed list;
            # the forced read finds one another process made since the last read.
            current = self._current(await self._load(self._cache_ttl_s))
            if current is None:
                current = self._current(await self._load(-1.0))
            if current is not None:
                return current
            created = await self._provider.create_signing_key(self._alg)
            log.info("created signing key %s (%s)", created.kid, created.alg)
            await self.refresh()
            return created

    async def sign(self, signing_input: bytes, *, kid: str | None = None) -> tuple[str, str, bytes]:
        """(kid, alg, signature) with the newest active key, or with ``kid`` when given (the
        kid a JWS header already names); the provider refuses a key that no longer signs."""
        if kid is None:
            info = await self.ensure_signing_key()
        else:
            keys = await self._load(self._cache_ttl_s)
            found = keys.get(kid)
            if found is None:
                found = (await self._load(-1.0)).get(kid)
            if found is None:
                raise KeyNotFound(f"no signing key {kid}")
            info = found
        signature = await self._provider.sign(info.kid, signing_input)
        return info.kid, info.alg, signature

    # --- verification ---------------------------------------------------------------------------

    async def verifier(self, kid: str) -> Verifier | None:
        """The public key for ``kid`` if it is one of ours and not retired; None otherwise."""
        if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
            return None
        info = (await self._load(self._cache_ttl_s)).get(kid)
        if info is None:
            info = (await self._load(self._unknown_refresh_s)).get(kid)
        if info is None or not self._usable(info):
            return None
        return await self._verifier_for(info)

    async def _verifier_for(self, info: KeyInfo) -> Verifier | None:
        verifier = self._verifiers.get(info.kid)
        if verifier is None:
            alg: SigningAlg = "ES256" if info.alg == "ES256" else "RS256"
            try:
                jwk = await self._provider.public_jwk(info.kid)
                verifier = Verifier.from_jwk(jwk, kid=info.kid, alg=alg)
            except MalformedToken:
                log.warning("provider gave an unusable public key for %s", info.kid)
                return None
            self._verifiers[info.kid] = verifier
        return verifier

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """{"keys": [...]}: every signing key that still verifies (active and verify-only),
        public parts only, oldest first."""
        keys = await self._load(self._cache_ttl_s)
        published = []
        for info in keys.values():
            if not self._usable(info):
                continue
            verifier = await self._verifier_for(info)
            if verifier is not None:
                published.append(verifier.public_jwk)
        return {"keys": published}
