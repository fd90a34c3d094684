"""WebAuthn registration and assertion against a software authenticator, on SQLite and MariaDB:
the real ceremony passes, forged answers (origin, rp id, challenge, clone, someone else's key)
do not."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.fakes.webauthn_authenticator import SoftwareAuthenticator
from tests.integration.identity.accounts import Account, make_account
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from obsigen.db.auth_models import WebAuthnCredential
from obsigen.db.models import User
from obsigen.ephemeral.memory import MemoryStore
from obsigen.errors import InvalidInput
from obsigen.identity.webauthn import WebAuthn

Sessions = async_sessionmaker[AsyncSession]
RP_ID = "obsigen.example"
ORIGIN = "https://obsigen.example"
SECOND_ORIGIN = "https://chat.obsigen.example"


@dataclass
class Ceremonies:
    """Runs each step in its own transaction, as the HTTP routes do."""

    sessions: Sessions
    webauthn: WebAuthn

    async def _user(self, session: AsyncSession, account: Account) -> User:
        user = await session.get(User, account.user_id)
        assert user is not None
        return user

    async def registration_options(self, account: Account) -> dict[str, Any]:
        async with self.sessions() as session:
            return await self.webauthn.registration_options(
                session, await self._user(session, account)
            )

    async def register(
        self, account: Account, credential: dict[str, Any], name: str = "my key"
    ) -> WebAuthnCredential:
        async with self.sessions.begin() as session:
            return await self.webauthn.register(
                session, await self._user(session, account), credential, name
            )

    async def enrol(self, account: Account, key: SoftwareAuthenticator) -> WebAuthnCredential:
        return await self.register(account, key.register(await self.registration_options(account)))

    async def authentication_options(self, account: Account) -> dict[str, Any]:
        async with self.sessions() as session:
            return await self.webauthn.authentication_options(
                session, await self._user(session, account)
            )

    async def authenticate(self, account: Account, credential: dict[str, Any]) -> bool:
        async with self.sessions.begin() as session:
            return await self.webauthn.authenticate(
                session, await self._user(session, account), credential
            )

    async def login(self, account: Account, key: SoftwareAuthenticator, **forge: Any) -> bool:
        options = await self.authentication_options(account)
        return await self.authenticate(account, key.get_assertion(options, **forge))

    async def stored(self, account: Account) -> list[WebAuthnCredential]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(WebAuthnCredential).where(WebAuthnCredential.user_id == account.user_id)
            )
            return list(rows)


@pytest.fixture
def ceremonies(sessions: Sessions) -> Ceremonies:
    webauthn = WebAuthn(
        MemoryStore(), rp_id=RP_ID, rp_name="Obsigen", origins=[ORIGIN, SECOND_ORIGIN]
    )
    return Ceremonies(sessions, webauthn)


REASONS = [
    "origin",
    "RP ID",
    "challenge",
    "sign count",
    "unknown credential",
    "handle",
    "signature",
]


@pytest.fixture(autouse=True)
def _log_refusals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="obsigen.identity.webauthn")


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Why each assertion was refused: a forged answer must be refused by the check aimed at
    it, not by some other failure that a later change could remove."""
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if record.name == "obsigen.identity.webauthn" and "refused" in message:
            found.append(next((r for r in REASONS if r in message), message))
    return found


def new_key(**kwargs: Any) -> SoftwareAuthenticator:
    kwargs.setdefault("origin", ORIGIN)
    return SoftwareAuthenticator(rp_id=RP_ID, **kwargs)


# --- the legitimate ceremonies -----------------------------------------------------------


async def test_register_then_authenticate(ceremonies: Ceremonies, account: Account) -> None:
    key = new_key()
    row = await ceremonies.enrol(account, key)
    assert row.user_id == account.user_id
    assert row.name == "my key"
    assert row.sign_count == 0

    assert await ceremonies.login(account, key)
    assert await ceremonies.login(account, key)
    (stored,) = await ceremonies.stored(account)
    assert stored.sign_count == 2
    assert stored.last_used_at is not None


async def test_what_is_stored(ceremonies: Ceremonies, account: Account) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    (row,) = await ceremonies.stored(account)
    assert base64url_to_bytes(row.credential_id) == key.credential_id
    assert row.credential_hash == hashlib.sha256(key.credential_id).hexdigest()
    assert base64url_to_bytes(row.public_key) == key.cose_public_key()
    assert row.transports == ["usb"]
    assert row.tenant_id


async def test_registration_options(ceremonies: Ceremonies, account: Account) -> None:
    options = await ceremonies.registration_options(account)
    json.dumps(options)  # ready for the HTTP response as it is
    assert options["rp"] == {"id": RP_ID, "name": "Obsigen"}
    assert base64url_to_bytes(options["user"]["id"]) == account.user_id.encode()
    assert options["user"]["name"] == account.email
    assert len(base64url_to_bytes(options["challenge"])) >= 32
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none"
    assert {-7, -8, -257} <= {p["alg"] for p in options["pubKeyCredParams"]}
    assert options["excludeCredentials"] == []

    key = new_key()
    await ceremonies.enrol(account, key)
    options = await ceremonies.registration_options(account)
    assert [c["id"] for c in options["excludeCredentials"]] == [
        bytes_to_base64url(key.credential_id)
    ]


async def test_every_configured_origin_is_accepted(
    ceremonies: Ceremonies, account: Account
) -> None:
    key = new_key(origin=SECOND_ORIGIN)
    await ceremonies.enrol(account, key)
    assert await ceremonies.login(account, key)
    assert await ceremonies.login(account, key, origin=ORIGIN)


async def test_several_keys_per_user(ceremonies: Ceremonies, account: Account) -> None:
    first, second = new_key(), new_key()
    await ceremonies.enrol(account, first)
    await ceremonies.enrol(account, second)
    options = await ceremonies.authentication_options(account)
    assert {c["id"] for c in options["allowCredentials"]} == {
        bytes_to_base64url(first.credential_id),
        bytes_to_base64url(second.credential_id),
    }
    assert await ceremonies.login(account, second)
    assert await ceremonies.login(account, first)


async def test_an_authenticator_without_a_counter_is_accepted(
    ceremonies: Ceremonies, account: Account
) -> None:
    key = new_key(counter_step=0)
    await ceremonies.enrol(account, key)
    assert await ceremonies.login(account, key)
    assert await ceremonies.login(account, key)


# --- forged registrations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ({"origin": "https://evil.example"}, "origin"),
        ({"origin": "http://obsigen.example"}, "origin"),
        ({"rp_id": "evil.example"}, "RP ID"),
        ({"challenge": bytes_to_base64url(b"a challenge the server never issued")}, "challenge"),
    ],
    ids=["other-origin", "plain-http", "other-rp-id", "unknown-challenge"],
)
async def test_forged_registration_is_refused(
    ceremonies: Ceremonies, account: Account, forge: dict[str, str], reason: str
) -> None:
    key = new_key()
    options = await ceremonies.registration_options(account)
    with pytest.raises(InvalidInput) as caught:
        await ceremonies.register(account, key.register(options, **forge))
    # Refused by the check aimed at the forgery, not by some other failure.
    assert reason in str(caught.value.__cause__)
    assert await ceremonies.stored(account) == []
    # The honest ceremony still works afterwards.
    await ceremonies.enrol(account, key)


async def test_a_registration_answer_cannot_be_replayed(
    ceremonies: Ceremonies, account: Account
) -> None:
    answer = new_key().register(await ceremonies.registration_options(account))
    await ceremonies.register(account, answer)
    with pytest.raises(InvalidInput, match="no registration is pending"):
        await ceremonies.register(account, answer)


async def test_a_superseded_challenge_is_refused(ceremonies: Ceremonies, account: Account) -> None:
    key = new_key()
    stale = await ceremonies.registration_options(account)
    fresh = await ceremonies.registration_options(account)
    with pytest.raises(InvalidInput):
        await ceremonies.register(account, key.register(stale))
    with pytest.raises(InvalidInput):  # the refused attempt used the pending challenge up
        await ceremonies.register(account, key.register(fresh))
    await ceremonies.enrol(account, key)


async def test_a_challenge_is_bound_to_its_user(
    ceremonies: Ceremonies, sessions: Sessions, account: Account
) -> None:
    other = await make_account(sessions, tenant=account.tenant)
    options_for_other = await ceremonies.registration_options(other)
    with pytest.raises(InvalidInput):
        await ceremonies.register(account, new_key().register(options_for_other))
    # The other user's pending ceremony is untouched by the attempt.
    await ceremonies.register(other, new_key().register(options_for_other))


async def test_registration_without_options_is_refused(
    ceremonies: Ceremonies, account: Account
) -> None:
    answer = new_key().register({"challenge": "AAAA", "user": {"id": "AAAA"}})
    with pytest.raises(InvalidInput, match="no registration is pending"):
        await ceremonies.register(account, answer)


@pytest.mark.parametrize(
    "credential",
    [{}, {"id": "x", "rawId": "x", "type": "public-key", "response": {}}, {"id": 1}],
)
async def test_malformed_registration_is_refused(
    ceremonies: Ceremonies, account: Account, credential: dict[str, Any]
) -> None:
    await ceremonies.registration_options(account)
    with pytest.raises(InvalidInput):
        await ceremonies.register(account, credential)


async def test_one_authenticator_cannot_be_registered_twice(
    ceremonies: Ceremonies, sessions: Sessions, account: Account
) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    other = await make_account(sessions, tenant=account.tenant)
    with pytest.raises(InvalidInput, match="already registered"):
        await ceremonies.enrol(other, key)


async def test_a_name_is_required(ceremonies: Ceremonies, account: Account) -> None:
    options = await ceremonies.registration_options(account)
    with pytest.raises(InvalidInput, match="name"):
        await ceremonies.register(account, new_key().register(options), name="  ")


# --- forged assertions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ({"origin": "https://evil.example"}, "origin"),
        ({"rp_id": "evil.example"}, "RP ID"),
        ({"challenge": bytes_to_base64url(b"a challenge the server never issued")}, "challenge"),
    ],
    ids=["other-origin", "other-rp-id", "unknown-challenge"],
)
async def test_forged_assertion_is_refused(
    ceremonies: Ceremonies,
    account: Account,
    forge: dict[str, str],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    assert not await ceremonies.login(account, key, **forge)
    assert refusals(caplog) == [reason]
    assert await ceremonies.login(account, key)


async def test_an_assertion_cannot_be_replayed(ceremonies: Ceremonies, account: Account) -> None:
    key = new_key(counter_step=0)  # no counter, so only the challenge stands in the way
    await ceremonies.enrol(account, key)
    answer = key.get_assertion(await ceremonies.authentication_options(account))
    assert await ceremonies.authenticate(account, answer)
    assert not await ceremonies.authenticate(account, answer)
    # Nor against a later challenge: it signed the old one.
    await ceremonies.authentication_options(account)
    assert not await ceremonies.authenticate(account, answer)


async def test_a_cloned_authenticator_is_refused(
    ceremonies: Ceremonies, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    clone = key.clone()
    assert await ceremonies.login(account, key)  # counter 1
    assert not await ceremonies.login(account, clone)  # counter 1 again: not greater
    assert refusals(caplog) == ["sign count"]
    assert await ceremonies.login(account, key)  # counter 2


async def test_a_counter_that_goes_back_to_zero_is_refused(
    ceremonies: Ceremonies, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    assert await ceremonies.login(account, key)
    key.sign_count, key.counter_step = 0, 0
    assert not await ceremonies.login(account, key)
    assert refusals(caplog) == ["sign count"]


async def test_another_users_authenticator_is_refused(
    ceremonies: Ceremonies, sessions: Sessions, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    mine, theirs = new_key(), new_key()
    other = await make_account(sessions, tenant=account.tenant)
    await ceremonies.enrol(account, mine)
    await ceremonies.enrol(other, theirs)
    # A valid signature over this user's challenge, by a key registered to someone else.
    assert not await ceremonies.login(account, theirs, user_handle=account.user_id.encode())
    assert not await ceremonies.login(account, theirs)
    assert refusals(caplog) == ["unknown credential", "handle"]
    assert await ceremonies.login(account, mine)
    assert await ceremonies.login(other, theirs)


async def test_another_users_handle_is_refused(
    ceremonies: Ceremonies, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    assert not await ceremonies.login(account, key, user_handle=b"f" * 32)
    assert refusals(caplog) == ["handle"]
    assert await ceremonies.login(account, key)


async def test_a_signature_by_another_key_is_refused(
    ceremonies: Ceremonies, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    impostor = new_key(credential_id=key.credential_id, sign_count=100)
    impostor.user_handle = key.user_handle
    assert not await ceremonies.login(account, impostor)
    assert refusals(caplog) == ["signature"]
    assert await ceremonies.login(account, key)


async def test_assertion_without_options_is_refused(
    ceremonies: Ceremonies, account: Account
) -> None:
    key = new_key()
    await ceremonies.enrol(account, key)
    forged = key.get_assertion({"challenge": bytes_to_base64url(b"guess"), "rpId": RP_ID})
    assert not await ceremonies.authenticate(account, forged)


@pytest.mark.parametrize(
    "credential",
    [{}, {"id": "x", "rawId": "x", "type": "public-key", "response": {}}, {"rawId": "!!"}],
)
async def test_malformed_assertion_is_refused(
    ceremonies: Ceremonies, account: Account, credential: dict[str, Any]
) -> None:
    await ceremonies.enrol(account, new_key())
    await ceremonies.authentication_options(account)
    assert not await ceremonies.authenticate(account, credential)


async def test_no_options_without_a_registered_key(
    ceremonies: Ceremonies, account: Account
) -> None:
    with pytest.raises(InvalidInput):
        await ceremonies.authentication_options(account)


async def test_assertion_options_list_only_the_users_keys(
    ceremonies: Ceremonies, sessions: Sessions, account: Account
) -> None:
    mine, theirs = new_key(), new_key()
    other = await make_account(sessions, tenant=account.tenant)
    await ceremonies.enrol(account, mine)
    await ceremonies.enrol(other, theirs)
    options = await ceremonies.authentication_options(account)
    assert options["rpId"] == RP_ID
    assert options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [
        bytes_to_base64url(mine.credential_id)
    ]
