"""Local password login with failure counters, lockout and backoff that do not reveal accounts.

Every way a login can fail (no such tenant, no such user, disabled user, user without a
password, wrong password) gives the same :class:`LoginFailed` after the same Argon2 work, and
counts against the same kind of counter: whoever probes addresses learns nothing from the
answer, its timing or the lockout. Counters live in the shared :class:`EphemeralStore`, so
every server process sees them (docs/mfa.md).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import math
import secrets
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.db.models import Tenant, User
from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.errors import TooManyAttempts, Unauthenticated
from obsigen.identity.passwords import hash_password, verify_password

LOGIN_FAILED_DETAIL = "the tenant, e-mail address or password is not correct"
LOGIN_THROTTLED_DETAIL = "too many failed logins: wait and retry"

# Clients behind one NAT share an address; the address limit is a wider net than the account's.
IP_LIMIT_FACTOR = 5
# IPv6 clients usually own a whole /64: counting single addresses would let one host rotate.
_IPV6_PREFIX = 64


class LoginFailed(Unauthenticated):
    type_slug = "login-failed"
    title = "Login failed"

    def __init__(self) -> None:
        # No argument on purpose: a cause-specific text would undo the non-enumeration.
        super().__init__(LOGIN_FAILED_DETAIL)


class LoginThrottled(TooManyAttempts):
    type_slug = "login-throttled"
    title = "Too many failed logins"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(LOGIN_THROTTLED_DETAIL, retry_after_s)


@functools.cache
def dummy_hash() -> str:
    """An Argon2id hash of a random password, made with the same parameters as real ones.

    Verifying against it costs what verifying a real hash costs, so a missing account takes as
    long to refuse as a wrong password. Computed once, when the first :class:`PasswordLogin` is
    built rather than at import (commands that never log anyone in do not pay for it), and not
    during a login (the first unknown account would take twice as long as the others).
    """
    return hash_password(secrets.token_urlsafe(32))


def _digest(*parts: str) -> str:
    # Keeps e-mail addresses and client addresses out of the store's key names.
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _address_bucket(source_ip: str) -> str:
    try:
        address = ipaddress.ip_address(source_ip.strip())
    except ValueError:
        return source_ip.strip()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, _IPV6_PREFIX), strict=False))
    return str(address)


class PasswordLogin:
    """Verifies tenant + e-mail + password, throttling by account and by source address.

    An account (tenant and normalised e-mail, whether or not it exists) may fail
    ``max_failures`` times within ``failure_window_s``; then every attempt for it, with a
    correct password too, is refused with :class:`LoginThrottled` for ``lockout_s``. A source
    address gets ``IP_LIMIT_FACTOR`` times as many failures over all accounts. After each
    failure the next attempt waits a little longer (doubling from ``backoff_base_s``, at most
    ``backoff_max_s``) before its password is checked.
    """

    def __init__(
        self,
        store: EphemeralStore,
        *,
        max_failures: int,
        failure_window_s: int,
        lockout_s: int,
        ip_limit_factor: int = IP_LIMIT_FACTOR,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_failures < 1 or failure_window_s < 1 or lockout_s < 1 or ip_limit_factor < 1:
            raise ValueError("login limits must be positive")
        self.store = store
        self.max_failures = max_failures
        self.failure_window_s = failure_window_s
        self.lockout_s = lockout_s
        self.ip_max_failures = max_failures * ip_limit_factor
        self._backoff_base_s = max(0.0, backoff_base_s)
        self._backoff_max_s = max(0.0, backoff_max_s)
        self._sleep = sleep
        dummy_hash()

    async def verify(
        self,
        session: AsyncSession,
        tenant_name: str,
        email: str,
        password: str,
        source_ip: str | None,
    ) -> User:
        tenant_name = tenant_name.strip().lower()
        email = email.strip().lower()
        account = _digest("account", tenant_name, email)
        address = _digest("address", _address_bucket(source_ip)) if source_ip else None

        await self._refuse_if_locked(account, address)
        # Counted before the password is checked, so a burst of parallel guesses cannot all
        # slip past the lock check while the first ones are still being verified.
        attempt = await self.store.incr(_fail_key(account), self.failure_window_s)
        if attempt > self.max_failures:
            await self._lock(account)
            raise LoginThrottled(max(1, await self._retry_after(account, address)))
        await self._backoff(attempt - 1)

        user = await session.scalar(
            select(User)
            .join(Tenant, Tenant.id == User.tenant_id)
            .where(Tenant.name == tenant_name, User.email == email)
        )
        stored_hash = user.password_hash if user is not None else None
        # Same Argon2 work whatever is missing; only a real hash can ever match.
        matches = await asyncio.to_thread(verify_password, stored_hash or dummy_hash(), password)
        if user is not None and stored_hash is not None and matches and user.status == "active":
            await self.store.delete(_fail_key(account))
            return user

        if attempt >= self.max_failures:
            await self._lock(account)
        if address is not None:
            failures = await self.store.incr(_fail_key(address), self.failure_window_s)
            if failures >= self.ip_max_failures:
                await self._lock(address)
        raise LoginFailed()

    async def _refuse_if_locked(self, account: str, address: str | None) -> None:
        retry_after = await self._retry_after(account, address)
        if retry_after > 0:
            raise LoginThrottled(retry_after)

    async def _retry_after(self, account: str, address: str | None) -> int:
        remaining = [await self.store.ttl(_lock_key(account))]
        if address is not None:
            remaining.append(await self.store.ttl(_lock_key(address)))
        left = max((r for r in remaining if r is not None), default=0.0)
        return math.ceil(left) if left > 0 else 0

    async def _lock(self, subject: str) -> None:
        # claim, not set: a second lock while one runs must not extend it.
        await self.store.claim(_lock_key(subject), self.lockout_s)
        # The window starts afresh after the lockout instead of re-locking on the first try.
        await self.store.delete(_fail_key(subject))

    async def _backoff(self, previous_failures: int) -> None:
        if previous_failures <= 0 or self._backoff_base_s <= 0:
            return
        delay = min(self._backoff_max_s, self._backoff_base_s * 2 ** (previous_failures - 1))
        await self._sleep(delay)


def _fail_key(subject: str) -> str:
    return f"login:fail:{subject}"


def _lock_key(subject: str) -> str:
    return f"login:lock:{subject}"
