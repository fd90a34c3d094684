"""The IdP's published metadata: its discovery document and its signing keys, each cached.

- Discovery (``/.well-known/openid-configuration``) is cached for ``discovery_ttl_s``; the
  ``issuer`` it names must equal the configured issuer exactly (OpenID Connect Discovery §4.3),
  so one IdP cannot pass itself off as another.
- The JWKS is cached for ``jwks_ttl_s``. A token signed with a key id we do not hold triggers
  one refetch (the IdP rolled its keys), but at most one per ``jwks_refetch_interval_s`` per
  IdP: otherwise anyone could make us fetch the JWKS once per request with made-up key ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from obsigen.federation.oidc_errors import IdpUnreachable, OidcRefused
from obsigen.federation.oidc_http import checked_url, request_json

DISCOVERY_PATH = "/.well-known/openid-configuration"

SigningKey = RSAKey | ECKey | OKPKey

# What each accepted algorithm needs of a key. Symmetric algorithms and "none" are absent on
# purpose: an HS* token would be signed with the client secret (anyone holding it could forge
# identities), and "none" is not signed at all.
ALGORITHM_KEYS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
    "Ed25519": ("OKP", "Ed25519"),
}


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    code_challenge_methods: tuple[str, ...]


def parse_metadata(expected_issuer: str, document: dict[str, Any]) -> ProviderMetadata:
    issuer = document.get("issuer")
    if issuer != expected_issuer:
        raise OidcRefused(
            f"the discovery document names issuer {str(issuer)[:200]!r}, not the configured"
            f" {expected_issuer!r}"
        )
    userinfo = document.get("userinfo_endpoint")
    methods = document.get("code_challenge_methods_supported") or []
    return ProviderMetadata(
        issuer=expected_issuer,
        authorization_endpoint=checked_url(
            "authorization_endpoint", document.get("authorization_endpoint")
        ),
        token_endpoint=checked_url("token_endpoint", document.get("token_endpoint")),
        jwks_uri=checked_url("jwks_uri", document.get("jwks_uri")),
        userinfo_endpoint=checked_url("userinfo_endpoint", userinfo) if userinfo else None,
        code_challenge_methods=tuple(m for m in methods if isinstance(m, str)),
    )


def parse_jwks(document: dict[str, Any]) -> list[SigningKey]:
    """The signature keys of a JWKS; encryption keys and key types we cannot use are skipped,
    so one odd entry does not take the IdP's other keys down with it."""
    keys: list[SigningKey] = []
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise IdpUnreachable("the identity provider's JWKS has no keys")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in {"RSA", "EC", "OKP"}:
            continue
        public = {k: v for k, v in entry.items() if k not in {"d", "p", "q", "dp", "dq", "qi"}}
        try:
            key = JWKRegistry.import_key(public)
        except (JoseError, ValueError, TypeError):
            continue
        if isinstance(key, RSAKey | ECKey | OKPKey):
            keys.append(key)
    return keys


def key_fits(key: SigningKey, alg: str) -> bool:
    kty, curve = ALGORITHM_KEYS[alg]
    if key.key_type != kty:
        return False
    declared = key.get("alg")
    if declared is not None and declared != alg:
        return False
    if alg == "EdDSA":
        return key.get("crv") in {"Ed25519", "Ed448"}
    return curve is None or key.get("crv") == curve


def select_key(keys: list[SigningKey], kid: str | None, alg: str) -> SigningKey | None:
    if kid is not None:
        candidates = [k for k in keys if k.kid == kid and key_fits(k, alg)]
    else:
        # Without a kid the key is unambiguous only when exactly one fits.
        candidates = [k for k in keys if key_fits(k, alg)]
    return candidates[0] if len(candidates) == 1 else None


@dataclass(slots=True)
class _Jwks:
    keys: list[SigningKey]
    fetched_at: float
    # When an unknown kid last forced a refetch; -inf: never.
    forced_at: float = float("-inf")


@dataclass(slots=True)
class MetadataCache:
    """Discovery documents and JWKS of every IdP this process talks to, keyed by issuer and
    JWKS URL. Shared by all tenants: the cache holds only what the IdPs publish."""

    discovery_ttl_s: float = 3600.0
    jwks_ttl_s: float = 3600.0
    jwks_refetch_interval_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    # How many times each JWKS URL was fetched (operators' metrics, the rollover tests).
    jwks_fetches: dict[str, int] = field(default_factory=dict)
    _discovery: dict[str, tuple[ProviderMetadata, float]] = field(default_factory=dict)
    _jwks: dict[str, _Jwks] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def metadata(self, client: httpx.AsyncClient, issuer: str) -> ProviderMetadata:
        async with self._lock(f"discovery:{issuer}"):
            cached = self._discovery.get(issuer)
            if cached is not None and self.clock() - cached[1] < self.discovery_ttl_s:
                return cached[0]
            _, document = await request_json(
                client, "GET", issuer + DISCOVERY_PATH, what="discovery"
            )
            metadata = parse_metadata(issuer, document)
            self._discovery[issuer] = (metadata, self.clock())
            return metadata

    async def _fetch_jwks(self, client: httpx.AsyncClient, jwks_uri: str) -> list[SigningKey]:
        _, document = await request_json(client, "GET", jwks_uri, what="jwks")
        self.jwks_fetches[jwks_uri] = self.jwks_fetches.get(jwks_uri, 0) + 1
        return parse_jwks(document)

    async def signing_key(
        self, client: httpx.AsyncClient, jwks_uri: str, kid: str | None, alg: str
    ) -> SigningKey:
        async with self._lock(f"jwks:{jwks_uri}"):
            now = self.clock()
            entry = self._jwks.get(jwks_uri)
            fresh = False
            if entry is None or now - entry.fetched_at >= self.jwks_ttl_s:
                keys = await self._fetch_jwks(client, jwks_uri)
                forced_at = entry.forced_at if entry is not None else float("-inf")
                entry = _Jwks(keys, now, forced_at)
                self._jwks[jwks_uri] = entry
                fresh = True
            key = select_key(entry.keys, kid, alg)
            if key is not None:
                return key
            if fresh or now - entry.forced_at < self.jwks_refetch_interval_s:
                raise OidcRefused(f"the ID token is signed with an unknown key (kid {kid!r})")
            # The IdP may have rolled its keys since we fetched them: look once more.
            entry.keys = await self._fetch_jwks(client, jwks_uri)
            entry.fetched_at = entry.forced_at = now
            key = select_key(entry.keys, kid, alg)
            if key is None:
                raise OidcRefused(f"the ID token is signed with an unknown key (kid {kid!r})")
            return key
