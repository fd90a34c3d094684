"""Rotation on top of any provider: what ``obsigen keys rotate`` and ``keys list`` need.

Signing keys: a new active key; every other active signing key becomes verify-only until
``overlap`` has passed (the longest a token signed now can stay valid), and counts as retired
from then on by itself. KEKs: a new active KEK; older ones become unwrap-only and are never
retired by rotation, since retiring a KEK destroys every data key wrapped under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from obsigen.keys.common import utcnow
from obsigen.keys.interfaces import KeyInfo, KeyProvider, KeyState, SigningAlg


@dataclass(frozen=True, slots=True)
class Rotation:
    created: KeyInfo
    demoted: list[KeyInfo]


async def rotate(
    provider: KeyProvider,
    kind: Literal["signing", "kek"],
    *,
    overlap: timedelta,
    alg: SigningAlg = "ES256",
    now: datetime | None = None,
) -> Rotation:
    if overlap < timedelta(0):
        raise ValueError("overlap must not be negative")
    now = now or utcnow()
    use = "sig" if kind == "signing" else "enc"
    previous = [
        info
        for info in await provider.list_keys()
        if info.use == use and info.state is KeyState.ACTIVE
    ]
    # The new key first: if demoting fails half-way there is still a key that signs.
    created = (
        await provider.create_signing_key(alg) if use == "sig" else await provider.create_kek()
    )
    retire_after = now + overlap if use == "sig" else None
    demoted = [
        await provider.set_state(info.kid, KeyState.VERIFY_ONLY, retire_after=retire_after)
        for info in previous
    ]
    return Rotation(created, demoted)


async def destroy_expired(provider: KeyProvider) -> list[KeyInfo]:
    """Make time-based retirements final: destroy the secret half of every key whose
    ``retire_after`` has passed. They already refuse to work; this removes the material."""
    done = []
    for info in await provider.list_keys():
        if info.state is KeyState.RETIRED and info.retire_after is not None:
            done.append(await provider.set_state(info.kid, KeyState.RETIRED))
    return done


def age(info: KeyInfo, now: datetime | None = None) -> timedelta:
    return (now or utcnow()) - info.created_at
