"""Rotation on every provider: the new key signs, the old one verifies during the overlap and
is retired after it; KEK rotation never shreds data."""

from __future__ import annotations

from datetime import timedelta

from obsigen.keys import KeyProvider, KeyState
from obsigen.keys.rotation import age, destroy_expired, rotate


async def test_signing_rotation_keeps_old_tokens_verifying_until_the_overlap_ends(
    provider: KeyProvider,
) -> None:
    first = await rotate(provider, "signing", overlap=timedelta(hours=1))
    old_signature = await provider.sign(first.created.kid, b"token signed before")

    second = await rotate(provider, "signing", overlap=timedelta(hours=1), alg="RS256")
    assert first.created.kid in {info.kid for info in second.demoted}
    assert (await provider.get_key(first.created.kid)).state is KeyState.VERIFY_ONLY
    assert await provider.verify(first.created.kid, b"token signed before", old_signature)
    new_signature = await provider.sign(second.created.kid, b"token signed after")
    assert await provider.verify(second.created.kid, b"token signed after", new_signature)

    # A rotation with no overlap left: the previous key is retired at once.
    third = await rotate(provider, "signing", overlap=timedelta(0))
    assert second.created.kid in {info.kid for info in third.demoted}
    assert (await provider.get_key(second.created.kid)).state is KeyState.RETIRED
    destroyed = {info.kid for info in await destroy_expired(provider)}
    assert second.created.kid in destroyed
    retired = await provider.get_key(second.created.kid)
    assert retired.state is KeyState.RETIRED
    assert retired.retire_after is None
    assert age(third.created) < timedelta(minutes=5)


async def test_kek_rotation_leaves_old_keks_unwrapping(provider: KeyProvider) -> None:
    first = await rotate(provider, "kek", overlap=timedelta(0))
    wrapped = await provider.wrap(first.created.kid, bytes(32), {"t": "1"})
    await rotate(provider, "kek", overlap=timedelta(0))
    old = await provider.get_key(first.created.kid)
    assert old.state is KeyState.VERIFY_ONLY
    assert old.retire_after is None
    assert await provider.unwrap(first.created.kid, wrapped, {"t": "1"}) == bytes(32)
