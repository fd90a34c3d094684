"""TokenService: what an access token holds, its lifetime, acr/mfa, and what key rotation does
to tokens already handed out."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from token_testkit import START, Clocks, CountingProvider

from obsigen.errors import Unauthenticated
from obsigen.keys.interfaces import KeyState, SigningAlg
from obsigen.keys.rotation import rotate
from obsigen.keys.software import SoftwareKeyProvider
from obsigen.tokens.access import (
    ACR_MFA,
    ACR_PWD,
    INVALID_TOKEN_DETAIL,
    AccessClaims,
    InvalidToken,
    TokenService,
)
from obsigen.tokens.keyring import KeyRing

RingFactory = Callable[..., KeyRing]
ServiceFactory = Callable[..., TokenService]
NOW = int(START)
HOUR = 3600


def _segment(text: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return decoded


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    return _segment(head), _segment(body)


async def issue(
    service: TokenService, amr: tuple[str, ...] = ("pwd",), session_left_s: int = 8 * HOUR
) -> tuple[str, AccessClaims]:
    return await service.issue(
        subject="user-1",
        tenant_id="tenant-a",
        session_id="sess-1",
        amr=amr,
        auth_time=NOW - 10,
        session_expires_at=NOW + session_left_s,
    )


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_round_trip(
    alg: SigningAlg, make_ring: RingFactory, make_service: ServiceFactory
) -> None:
    service = make_service(make_ring(alg), access_ttl_s=900)
    token, claims = await issue(service)
    header, payload = decode(token)
    kid = (await service.keyring.ensure_signing_key()).kid
    assert header == {"alg": alg, "typ": "at+jwt", "kid": kid}
    assert payload == {
        "iss": service.issuer,
        "aud": service.audience,
        "sub": "user-1",
        "tid": "tenant-a",
        "sid": "sess-1",
        "jti": claims.token_id,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
        "auth_time": NOW - 10,
        "sx": NOW + 8 * HOUR,
        "amr": ["pwd"],
        "acr": ACR_PWD,
    }
    assert await service.verify(token) == claims


async def test_token_ids_are_random_128_bit(
    make_ring: RingFactory, make_service: ServiceFactory
) -> None:
    service = make_service(make_ring())
    ids = {(await issue(service))[1].token_id for _ in range(20)}
    assert len(ids) == 20
    for token_id in ids:
        assert len(base64.urlsafe_b64decode(token_id + "==")) == 16


async def test_exp_never_goes_beyond_the_session_end(
    make_ring: RingFactory, make_service: ServiceFactory, clocks: Clocks
) -> None:
    service = make_service(make_ring(), access_ttl_s=900, clock_skew_s=0)
    token, claims = await issue(service, session_left_s=120)
    assert claims.expires_at == claims.session_expires_at == NOW + 120
    assert decode(token)[1]["exp"] == NOW + 120
    clocks.wall = NOW + 119
    await service.verify(token)
    clocks.wall = NOW + 120
    with pytest.raises(InvalidToken):
        await service.verify(token)


async def test_no_token_for_a_session_that_has_ended(
    make_ring: RingFactory, make_service: ServiceFactory
) -> None:
    service = make_service(make_ring())
    with pytest.raises(Unauthenticated):
        await issue(service, session_left_s=0)


@pytest.mark.parametrize(
    ("amr", "mfa", "acr"),
    [
        (("pwd",), False, ACR_PWD),
        (("pwd", "otp"), True, ACR_MFA),
        (("hwk", "user"), True, ACR_MFA),
        (("swk",), True, ACR_MFA),
        (("mfa",), True, ACR_MFA),
        (("pwd", "sms"), False, ACR_PWD),  # sms is not a factor we count
    ],
)
async def test_acr_and_mfa_follow_amr(
    amr: tuple[str, ...],
    mfa: bool,
    acr: str,
    make_ring: RingFactory,
    make_service: ServiceFactory,
) -> None:
    service = make_service(make_ring())
    token, claims = await issue(service, amr=amr)
    assert (claims.mfa, claims.acr, claims.amr) == (mfa, acr, amr)
    verified = await service.verify(token)
    assert (verified.mfa, verified.acr) == (mfa, acr)


async def test_amr_must_be_a_list_of_method_names(
    make_ring: RingFactory, make_service: ServiceFactory
) -> None:
    service = make_service(make_ring())
    with pytest.raises(TypeError):
        await issue(service, amr="otp")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await issue(service, amr=())


def test_skew_is_bounded(make_ring: RingFactory, make_service: ServiceFactory) -> None:
    with pytest.raises(ValueError):
        make_service(make_ring(), clock_skew_s=121)
    make_service(make_ring(), clock_skew_s=120)


async def test_expiry_honours_the_skew_and_no_more(
    make_ring: RingFactory, make_service: ServiceFactory, clocks: Clocks
) -> None:
    service = make_service(make_ring(), access_ttl_s=900, clock_skew_s=30)
    token, _ = await issue(service)
    clocks.wall = NOW + 900 + 29
    await service.verify(token)
    clocks.wall = NOW + 900 + 30
    with pytest.raises(InvalidToken) as caught:
        await service.verify(token)
    assert caught.value.detail == INVALID_TOKEN_DETAIL
    assert caught.value.status == 401


async def test_a_verifier_with_a_shorter_ttl_refuses_longer_lived_tokens(
    make_ring: RingFactory, make_service: ServiceFactory
) -> None:
    ring = make_ring()
    token, _ = await issue(make_service(ring, access_ttl_s=3600))
    await make_service(ring, access_ttl_s=3600).verify(token)
    with pytest.raises(InvalidToken):
        await make_service(ring, access_ttl_s=900).verify(token)


async def test_a_token_verifies_with_no_provider_call(
    make_ring: RingFactory, make_service: ServiceFactory, counting: CountingProvider
) -> None:
    service = make_service(make_ring())
    token, _ = await issue(service)
    await service.verify(token)
    counting.calls.clear()
    for _ in range(20):
        await service.verify(token)
    assert counting.calls == {}


# --- rotation ------------------------------------------------------------------------------------


async def test_rotation_old_tokens_verify_while_verify_only_then_fail_once_retired(
    make_ring: RingFactory,
    make_service: ServiceFactory,
    software: SoftwareKeyProvider,
    clocks: Clocks,
) -> None:
    ring = make_ring()
    service = make_service(ring, access_ttl_s=900)
    old_token, _ = await issue(service)
    old_kid = decode(old_token)[0]["kid"]

    clocks.wall += 1
    rotation = await rotate(software, "signing", overlap=timedelta(seconds=900), now=clocks.now())
    assert [info.kid for info in rotation.demoted] == [old_kid]
    await ring.refresh()
    clocks.wall += 300
    assert (await software.get_key(old_kid)).state is KeyState.VERIFY_ONLY
    # New tokens come from the new key; the old token still verifies.
    new_token, _ = await issue(service)
    assert decode(new_token)[0]["kid"] == rotation.created.kid
    await service.verify(old_token)
    await service.verify(new_token)

    await software.set_state(old_kid, KeyState.RETIRED)
    clocks.mono += 61  # the key list's cache TTL: a hand-set state shows after it
    with pytest.raises(InvalidToken):
        await service.verify(old_token)  # not expired: refused for the key alone
    await service.verify(new_token)


async def test_rotation_retire_after_ends_old_tokens_without_any_job(
    make_ring: RingFactory,
    make_service: ServiceFactory,
    software: SoftwareKeyProvider,
    clocks: Clocks,
) -> None:
    ring = make_ring()
    service = make_service(ring, access_ttl_s=900, clock_skew_s=0)
    old_token, _ = await issue(service)
    clocks.wall += 1
    await rotate(software, "signing", overlap=timedelta(seconds=60), now=clocks.now())
    await ring.refresh()
    clocks.wall += 59
    await service.verify(old_token)
    clocks.wall += 1  # retire_after reached; the token itself has 839 s left
    with pytest.raises(InvalidToken):
        await service.verify(old_token)


async def test_a_rotation_by_another_process_is_picked_up_when_signing(
    make_ring: RingFactory,
    make_service: ServiceFactory,
    software: SoftwareKeyProvider,
    clocks: Clocks,
) -> None:
    ring = make_ring()
    service = make_service(ring)
    first, _ = await issue(service)
    clocks.wall += 1
    # Behind the ring's back: its cached list still says the old key is active.
    rotation = await rotate(software, "signing", overlap=timedelta(seconds=900), now=clocks.now())
    token, _ = await issue(service)
    assert decode(token)[0]["kid"] == rotation.created.kid
    await service.verify(token)
    await service.verify(first)
