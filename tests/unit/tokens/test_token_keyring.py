"""KeyRing: local verification from cached public keys, a throttled re-read for unknown kids,
key states as the token layer sees them, and the JWKS."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from token_testkit import Clocks, CountingProvider

from obsigen.keys.interfaces import KeyState
from obsigen.keys.rotation import rotate
from obsigen.keys.software import SoftwareKeyProvider
from obsigen.tokens.keyring import KeyRing

RingFactory = Callable[..., KeyRing]


def random_kid() -> str:
    return f"sig-{secrets.token_hex(8)}"


async def test_ensure_signing_key_creates_one_key_then_reuses_it(
    make_ring: RingFactory, counting: CountingProvider
) -> None:
    ring = make_ring()
    first = await ring.ensure_signing_key()
    assert first.alg == "ES256"
    assert first.state is KeyState.ACTIVE
    assert await ring.ensure_signing_key() == first
    assert counting.calls["create_signing_key"] == 1


async def test_concurrent_first_calls_create_a_single_key(
    make_ring: RingFactory, counting: CountingProvider
) -> None:
    ring = make_ring()
    infos = await asyncio.gather(*(ring.ensure_signing_key() for _ in range(5)))
    assert len({info.kid for info in infos}) == 1
    assert counting.calls["create_signing_key"] == 1


async def test_the_configured_alg_picks_the_signing_key(
    make_ring: RingFactory, counting: CountingProvider
) -> None:
    es = await make_ring("ES256").ensure_signing_key()
    rs = await make_ring("RS256").ensure_signing_key()
    assert (es.alg, rs.alg) == ("ES256", "RS256")
    kid, alg, signature = await make_ring("RS256").sign(b"input")
    assert (kid, alg) == (rs.kid, "RS256")
    assert await counting.verify(rs.kid, b"input", signature)


async def test_sign_uses_the_newest_active_key(
    make_ring: RingFactory, software: SoftwareKeyProvider, clocks: Clocks
) -> None:
    ring = make_ring()
    old = await ring.ensure_signing_key()
    clocks.wall += 1
    created = (
        await rotate(software, "signing", overlap=timedelta(minutes=15), now=clocks.now())
    ).created
    await ring.refresh()
    kid, alg, _ = await ring.sign(b"input")
    assert (kid, alg) == (created.kid, "ES256")
    assert kid != old.kid


async def test_verifying_a_known_kid_costs_no_provider_call_after_the_first(
    make_ring: RingFactory, counting: CountingProvider
) -> None:
    ring = make_ring()
    kid, _, signature = await ring.sign(b"input")
    counting.calls.clear()
    verifier = await ring.verifier(kid)
    assert verifier is not None
    assert verifier.verify(b"input", signature)
    assert counting.calls == {"public_jwk": 1}  # the key list is still fresh from sign()
    for _ in range(50):
        assert await ring.verifier(kid) is verifier
    assert counting.calls == {"public_jwk": 1}


async def test_key_list_is_reread_after_its_ttl(
    make_ring: RingFactory, counting: CountingProvider, clocks: Clocks
) -> None:
    ring = make_ring(cache_ttl_s=60.0)
    info = await ring.ensure_signing_key()
    counting.calls.clear()
    clocks.mono += 59
    await ring.verifier(info.kid)
    assert counting.calls.get("list_keys", 0) == 0
    clocks.mono += 2
    await ring.verifier(info.kid)
    assert counting.calls["list_keys"] == 1


async def test_bad_kid_shapes_never_reach_the_provider(
    make_ring: RingFactory, counting: CountingProvider
) -> None:
    ring = make_ring()  # cold: a lookup of a well-formed kid would have to read the list
    for kid in ["../../keys/x", "' OR 1=1 --", "sig-1/../../master", "", "a" * 200, "k\n"]:
        assert await ring.verifier(kid) is None
    assert counting.total() == 0


async def test_a_flood_of_unknown_kids_rereads_the_list_at_most_once_per_interval(
    make_ring: RingFactory, counting: CountingProvider, clocks: Clocks
) -> None:
    ring = make_ring(unknown_kid_refresh_s=5.0)
    await ring.ensure_signing_key()
    clocks.mono += 10  # the list read at creation is now older than the throttle interval
    counting.calls.clear()
    for _ in range(200):
        assert await ring.verifier(random_kid()) is None
    assert counting.calls == {"list_keys": 1}
    await asyncio.gather(*(ring.verifier(random_kid()) for _ in range(200)))
    assert counting.calls == {"list_keys": 1}
    clocks.mono += 5
    await asyncio.gather(*(ring.verifier(random_kid()) for _ in range(200)))
    assert counting.calls == {"list_keys": 2}


async def test_a_key_made_by_another_process_is_found_after_the_interval(
    make_ring: RingFactory, clocks: Clocks, tmp_path: Path
) -> None:
    ring = make_ring()
    await ring.ensure_signing_key()
    other = SoftwareKeyProvider(tmp_path / "keys", clock=clocks.now)  # same files
    try:
        made = await other.create_signing_key("ES256")
    finally:
        await other.aclose()
    # Read moments ago: the unknown kid is refused without asking again...
    assert await ring.verifier(made.kid) is None
    clocks.mono += 5
    # ...and found once the interval has passed, long before the cache TTL.
    assert await ring.verifier(made.kid) is not None


async def test_verify_only_keys_verify_and_retired_keys_do_not(
    make_ring: RingFactory, software: SoftwareKeyProvider, clocks: Clocks
) -> None:
    ring = make_ring()
    kid, _, signature = await ring.sign(b"input")
    await rotate(software, "signing", overlap=timedelta(minutes=15), now=clocks.now())
    clocks.mono += 61
    verifier = await ring.verifier(kid)
    assert verifier is not None
    assert verifier.verify(b"input", signature)
    await software.set_state(kid, KeyState.RETIRED)
    # A state set by hand shows once the cached list is older than its TTL.
    clocks.mono += 61
    assert await ring.verifier(kid) is None


async def test_retire_after_takes_effect_at_once_without_a_reread(
    make_ring: RingFactory,
    software: SoftwareKeyProvider,
    counting: CountingProvider,
    clocks: Clocks,
) -> None:
    ring = make_ring()
    kid, _, _ = await ring.sign(b"input")
    await rotate(software, "signing", overlap=timedelta(seconds=60), now=clocks.now())
    await ring.refresh()
    assert await ring.verifier(kid) is not None
    counting.calls.clear()
    clocks.wall += 60  # the monotonic clock stands still: the cached list is not re-read
    assert await ring.verifier(kid) is None
    assert counting.calls.get("list_keys", 0) == 0


async def test_jwks_lists_usable_keys_with_public_parts_only(
    make_ring: RingFactory, software: SoftwareKeyProvider, clocks: Clocks
) -> None:
    ring = make_ring()
    first = await ring.ensure_signing_key()
    overlap = timedelta(minutes=15)
    clocks.wall += 1
    second = (await rotate(software, "signing", overlap=overlap, now=clocks.now())).created
    clocks.wall += 1
    third = (await rotate(software, "signing", overlap=overlap, now=clocks.now())).created
    await software.set_state(first.kid, KeyState.RETIRED)
    await ring.refresh()
    jwks = await ring.jwks()
    assert [key["kid"] for key in jwks["keys"]] == [second.kid, third.kid]
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    clocks.wall += 15 * 60  # the overlap of the verify-only key is over
    assert [key["kid"] for key in (await ring.jwks())["keys"]] == [third.kid]


async def test_rsa_keys_publish_n_and_e(make_ring: RingFactory) -> None:
    ring = make_ring("RS256")
    await ring.ensure_signing_key()
    (key,) = (await ring.jwks())["keys"]
    assert set(key) == {"kty", "n", "e", "kid", "alg", "use"}
    assert key["kty"] == "RSA"


async def test_kek_ids_are_not_signing_keys(
    make_ring: RingFactory, software: SoftwareKeyProvider
) -> None:
    ring = make_ring()
    await ring.ensure_signing_key()
    kek = await software.create_kek()
    await ring.refresh()
    assert await ring.verifier(kek.kid) is None
    assert kek.kid not in {key["kid"] for key in (await ring.jwks())["keys"]}


async def test_a_provider_outage_keeps_the_cached_list_and_is_not_hammered(
    make_ring: RingFactory, counting: CountingProvider, clocks: Clocks
) -> None:
    ring = make_ring()
    kid, _, _ = await ring.sign(b"input")
    assert await ring.verifier(kid) is not None
    counting.list_fails = True
    clocks.mono += 61
    counting.calls.clear()
    for _ in range(20):
        assert await ring.verifier(kid) is not None
        assert await ring.verifier(random_kid()) is None
    assert counting.calls == {"list_keys": 1}
    clocks.mono += 5  # and asked again once the interval has passed
    await ring.verifier(kid)
    assert counting.calls == {"list_keys": 2}


async def test_a_cold_ring_with_the_provider_down_raises() -> None:
    class Down:
        name = "down"

        async def list_keys(self) -> Any:
            raise ConnectionError("provider down")

    ring = KeyRing(Down())  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await ring.verifier(random_kid())
