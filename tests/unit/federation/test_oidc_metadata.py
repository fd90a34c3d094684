"""Discovery and JWKS caching against a scripted IdP (httpx.MockTransport): the issuer check,
the caches' lifetimes, and the key rollover with its rate limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from obsigen.errors import InvalidInput
from obsigen.federation.oidc import federated_identity, idp_mfa, safe_return_to
from obsigen.federation.oidc_config import OidcConfig
from obsigen.federation.oidc_errors import IdpUnreachable, OidcRefused
from obsigen.federation.oidc_http import MAX_DOCUMENT_BYTES, new_client
from obsigen.federation.oidc_metadata import MetadataCache

ISSUER = "https://idp.example.eu"
JWKS_URI = f"{ISSUER}/jwks"


def public_jwk(kid: str) -> dict[str, Any]:
    return RSAKey.generate_key(2048, parameters={"kid": kid}).as_dict(private=False)


class FakeIdp:
    def __init__(self) -> None:
        self.discovery: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/auth",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": JWKS_URI,
            "userinfo_endpoint": f"{ISSUER}/me",
        }
        self.keys: list[dict[str, Any]] = [public_jwk("k1")]
        self.hits: dict[str, int] = {}
        self.jwks_response: httpx.Response | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if path == "/jwks":
            return self.jwks_response or httpx.Response(200, json={"keys": self.keys})
        return httpx.Response(404)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> FakeIdp:
    return FakeIdp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> MetadataCache:
    return MetadataCache(
        discovery_ttl_s=300, jwks_ttl_s=300, jwks_refetch_interval_s=60, clock=clock
    )


def client(idp: FakeIdp) -> httpx.AsyncClient:
    return new_client(5.0, httpx.MockTransport(idp))


async def test_discovery_is_cached_for_its_ttl(
    idp: FakeIdp, cache: MetadataCache, clock: Clock
) -> None:
    async with client(idp) as http:
        first = await cache.metadata(http, ISSUER)
        await cache.metadata(http, ISSUER)
        assert idp.hits["/.well-known/openid-configuration"] == 1
        clock.now += 301
        await cache.metadata(http, ISSUER)
    assert idp.hits["/.well-known/openid-configuration"] == 2
    assert first.token_endpoint == f"{ISSUER}/token"


@pytest.mark.parametrize("named", [ISSUER + "/", "https://other.example.eu", None])
async def test_a_discovery_document_for_another_issuer_is_refused(
    idp: FakeIdp, cache: MetadataCache, named: str | None
) -> None:
    idp.discovery["issuer"] = named
    async with client(idp) as http:
        with pytest.raises(OidcRefused, match="names issuer"):
            await cache.metadata(http, ISSUER)


async def test_plain_http_endpoints_off_loopback_are_refused(
    idp: FakeIdp, cache: MetadataCache
) -> None:
    idp.discovery["jwks_uri"] = "http://keys.example.eu/jwks"
    async with client(idp) as http:
        with pytest.raises(IdpUnreachable, match="jwks_uri"):
            await cache.metadata(http, ISSUER)


async def test_redirects_are_not_followed(idp: FakeIdp, cache: MetadataCache) -> None:
    idp.jwks_response = httpx.Response(302, headers={"location": "https://evil.example/jwks"})
    async with client(idp) as http:
        with pytest.raises(IdpUnreachable, match="redirect"):
            await cache.signing_key(http, JWKS_URI, "k1", "RS256")
    assert set(idp.hits) == {"/jwks"}


async def test_an_oversized_document_is_refused(idp: FakeIdp, cache: MetadataCache) -> None:
    idp.jwks_response = httpx.Response(200, content=b" " * (MAX_DOCUMENT_BYTES + 1))
    async with client(idp) as http:
        with pytest.raises(IdpUnreachable, match="too large"):
            await cache.signing_key(http, JWKS_URI, "k1", "RS256")


async def test_encryption_keys_and_unknown_key_types_are_skipped(
    idp: FakeIdp, cache: MetadataCache
) -> None:
    idp.keys = [
        {**public_jwk("enc"), "use": "enc"},
        {"kty": "oct", "kid": "sym", "k": "AAAA"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        public_jwk("k1"),
    ]
    async with client(idp) as http:
        assert (await cache.signing_key(http, JWKS_URI, "k1", "RS256")).kid == "k1"
        with pytest.raises(OidcRefused, match="unknown key"):
            await cache.signing_key(http, JWKS_URI, "enc", "RS256")


async def test_a_rolled_key_is_fetched_once_and_unknown_kids_are_rate_limited(
    idp: FakeIdp, cache: MetadataCache, clock: Clock
) -> None:
    async with client(idp) as http:
        await cache.signing_key(http, JWKS_URI, "k1", "RS256")
        assert cache.jwks_fetches[JWKS_URI] == 1

        idp.keys = [public_jwk("k2")]  # the IdP rolls its key
        clock.now += 1
        assert (await cache.signing_key(http, JWKS_URI, "k2", "RS256")).kid == "k2"
        assert cache.jwks_fetches[JWKS_URI] == 2

        # Made-up kids right after do not make us fetch again.
        for kid in ("made-up-1", "made-up-2", "made-up-3"):
            with pytest.raises(OidcRefused, match="unknown key"):
                await cache.signing_key(http, JWKS_URI, kid, "RS256")
        assert cache.jwks_fetches[JWKS_URI] == 2
        assert (await cache.signing_key(http, JWKS_URI, "k2", "RS256")).kid == "k2"

        clock.now += 61  # after the interval one more look is allowed
        with pytest.raises(OidcRefused, match="unknown key"):
            await cache.signing_key(http, JWKS_URI, "made-up-4", "RS256")
        assert cache.jwks_fetches[JWKS_URI] == 3


async def test_a_token_without_kid_needs_exactly_one_fitting_key(
    idp: FakeIdp, cache: MetadataCache
) -> None:
    async with client(idp) as http:
        assert (await cache.signing_key(http, JWKS_URI, None, "RS256")).kid == "k1"
        with pytest.raises(OidcRefused):
            await cache.signing_key(http, JWKS_URI, None, "ES256")


# --- what the IdP says about the user -------------------------------------------------------

CONFIG = OidcConfig(issuer=ISSUER, client_id="obsigen", mfa_acr_values=["urn:example:mfa"])


@pytest.mark.parametrize(
    ("claims", "mfa"),
    [
        ({"amr": ["pwd", "otp"]}, True),
        ({"amr": ["pwd"]}, False),
        ({"amr": "mfa"}, False),  # amr is an array; a bare string is not trusted
        ({"acr": "urn:example:mfa"}, True),
        ({"acr": "urn:example:pwd"}, False),
        ({}, False),
    ],
)
def test_idp_mfa_reads_amr_and_acr(claims: dict[str, Any], mfa: bool) -> None:
    assert idp_mfa(claims, CONFIG) is mfa


def test_userinfo_fills_in_but_mfa_comes_from_the_id_token() -> None:
    identity = federated_identity(
        {"sub": "s1", "amr": ["pwd"]},
        {
            "sub": "s1",
            "email": "a@example.eu",
            "email_verified": "true",
            "groups": "staff",
            "amr": ["mfa"],
            "name": "A",
        },
        CONFIG,
    )
    assert identity.email == "a@example.eu"
    assert identity.email_verified is True
    assert identity.groups == ("staff",)
    assert identity.idp_mfa is False


def test_groups_are_strings_without_duplicates() -> None:
    identity = federated_identity(
        {"sub": "s1", "groups": ["a", "a", 3, {"x": 1}, "", "b"]}, {}, CONFIG
    )
    assert identity.groups == ("a", "b")
    assert identity.email_verified is False


@pytest.mark.parametrize("value", ["/", "/chat?x=1", None, ""])
def test_local_return_paths_pass(value: str | None) -> None:
    assert safe_return_to(value) == (value or None)


@pytest.mark.parametrize(
    "value", ["https://evil.example", "//evil.example", "/\\evil.example", "chat", "/a b"]
)
def test_other_return_targets_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput):
        safe_return_to(value)
