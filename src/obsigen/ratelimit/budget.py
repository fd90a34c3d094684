"""Inference token budgets per tenant and per user, per calendar period (UTC-aligned windows).

A request reserves its estimated tokens before the model is called, against the tenant's and
the user's budget together: both must have room, and the reservation takes from both or from
neither, in one atomic step. Concurrent requests therefore cannot jointly overspend, whichever
server process they reach. After the call, :meth:`settle` replaces the estimate with the actual
usage (refunding the difference, or charging an overrun); :meth:`release` returns everything
when the call failed. Windows start at multiples of the period since the Unix epoch, so a
"/day" budget resets at 00:00 UTC; Redis's clock decides the window, never the app server's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis

from obsigen.ephemeral.interfaces import StoreUnavailable
from obsigen.ratelimit.errors import TokenBudgetExceeded
from obsigen.ratelimit.gcra import STORE_ERRORS, StoreDownPolicy, _Throttled
from obsigen.ratelimit.rates import Rate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Scope:
    label: str  # "tenant" or "user": named in the refusal
    key: str
    rate: Rate


@dataclass(slots=True)
class Reservation:
    """Tokens held against the budgets until settled or released (at most once)."""

    tokens: int
    keys: tuple[str, ...] = ()
    windows: tuple[int, ...] = ()
    # The least room left in any scope after this reservation (None: no budget applies).
    remaining: int | None = None
    degraded: bool = False
    done: bool = field(default=False, compare=False)


class TokenBudget(Protocol):
    name: str

    async def reserve(
        self,
        tenant: str,
        user: str,
        estimated_tokens: int,
        *,
        on_store_down: StoreDownPolicy | None = None,
    ) -> Reservation:
        """Hold ``estimated_tokens`` against both budgets, or raise TokenBudgetExceeded."""
        ...

    async def settle(self, reservation: Reservation, actual_tokens: int) -> None:
        """Count ``actual_tokens`` instead of the estimate. Never raises for a store outage."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Return the whole reservation (the call failed before using tokens)."""
        ...


def _scopes(
    tenant_rate: Rate | None, user_rate: Rate | None, tenant: str, user: str
) -> list[_Scope]:
    # One hash tag per tenant keeps both keys in one slot of a Redis Cluster.
    scopes = []
    if tenant_rate is not None:
        scopes.append(_Scope("tenant", f"{{t:{tenant}}}:tenant", tenant_rate))
    if user_rate is not None:
        scopes.append(_Scope("user", f"{{t:{tenant}}}:u:{user}", user_rate))
    return scopes


def _refusal(
    scopes: Sequence[_Scope], rows: Sequence[tuple[int, int, int]], tokens: int
) -> TokenBudgetExceeded:
    """rows: (window, remaining, reset_after_us) per scope, before the refused reservation."""
    short = [(s, r) for s, r in zip(scopes, rows, strict=True) if r[1] < tokens]
    scope, (_, remaining, reset_us) = max(short, key=lambda pair: pair[1][2])
    left = max(0, remaining)
    return TokenBudgetExceeded(
        f"the {scope.label} token budget ({scope.rate.limit} per {scope.rate.period_s} s) has "
        f"{left} tokens left; this request may need up to {tokens}",
        retry_after_s=reset_us / 1e6,
        limit=scope.rate.limit,
        remaining=left,
        reset_after_s=reset_us / 1e6,
        period_s=scope.rate.period_s,
    )


def _check_tokens(tokens: int) -> None:
    if tokens < 0:
        raise ValueError("token counts cannot be negative")


# KEYS: one hash per scope {w: window index, u: tokens used in it}. ARGV[1]: tokens; then per
# scope its limit and period (µs). Returns {ok, then per scope: window, remaining, reset_us}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tokens = tonumber(ARGV[1])
local n = #KEYS
local used, window, limit, period = {}, {}, {}, {}
local ok = 1
for i = 1, n do
  limit[i] = tonumber(ARGV[2 * i])
  period[i] = tonumber(ARGV[2 * i + 1])
  window[i] = math.floor(now / period[i])
  local h = redis.call('HMGET', KEYS[i], 'w', 'u')
  local u = 0
  if h[1] and tonumber(h[1]) == window[i] then u = tonumber(h[2]) end
  used[i] = u
  if u + tokens > limit[i] then ok = 0 end
end
local out = {ok}
for i = 1, n do
  local reset_us = (window[i] + 1) * period[i] - now
  if ok == 1 then
    used[i] = used[i] + tokens
    redis.call('HSET', KEYS[i], 'w', string.format('%.0f', window[i]),
               'u', string.format('%.0f', used[i]))
    redis.call('PEXPIRE', KEYS[i], string.format('%.0f', math.floor(reset_us / 1000) + 1000))
  end
  out[#out + 1] = window[i]
  out[#out + 1] = limit[i] - used[i]
  out[#out + 1] = reset_us
end
return out
"""

# KEYS: the reservation's hashes. ARGV[1]: tokens to add (negative: refund); then per scope
# the window the reservation was made in. A window that has ended is left alone: its tokens
# are gone with it, and the new window must not be credited or charged for the old one.
_ADJUST = """
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'w', 'u')
  if h[1] and h[1] == ARGV[i + 1] then
    local u = tonumber(h[2]) + delta
    if u < 0 then u = 0 end
    redis.call('HSET', KEYS[i], 'u', string.format('%.0f', u))
  end
end
return 1
"""


class _Base:
    def __init__(self, tenant_rate: Rate | None, user_rate: Rate | None) -> None:
        self._tenant_rate = tenant_rate
        self._user_rate = user_rate

    async def release(self, reservation: Reservation) -> None:
        await self.settle(reservation, 0)

    async def settle(self, reservation: Reservation, actual_tokens: int) -> None:
        _check_tokens(actual_tokens)
        if reservation.done:
            return
        reservation.done = True
        delta = actual_tokens - reservation.tokens
        if reservation.degraded or not reservation.keys or delta == 0:
            return
        await self._adjust(reservation, delta)

    async def _adjust(self, reservation: Reservation, delta: int) -> None:
        raise NotImplementedError


class RedisTokenBudget(_Base):
    name = "redis"

    def __init__(
        self,
        redis: Redis,
        tenant_rate: Rate | None,
        user_rate: Rate | None,
        *,
        prefix: str = "obsigen:tb:",
        on_store_down: StoreDownPolicy = "closed",
    ) -> None:
        super().__init__(tenant_rate, user_rate)
        self._prefix = prefix
        self._on_store_down: StoreDownPolicy = on_store_down
        self._reserve = redis.register_script(_RESERVE)
        self._adjust_script = redis.register_script(_ADJUST)
        self._outage = _Throttled()

    async def reserve(
        self,
        tenant: str,
        user: str,
        estimated_tokens: int,
        *,
        on_store_down: StoreDownPolicy | None = None,
    ) -> Reservation:
        _check_tokens(estimated_tokens)
        scopes = _scopes(self._tenant_rate, self._user_rate, tenant, user)
        if not scopes:
            return Reservation(tokens=estimated_tokens)
        keys = [self._prefix + scope.key for scope in scopes]
        args: list[int] = [estimated_tokens]
        for scope in scopes:
            args += [scope.rate.limit, scope.rate.period_us]
        try:
            raw = await self._reserve(keys=keys, args=args)
        except STORE_ERRORS as exc:
            if (on_store_down or self._on_store_down) == "closed":
                raise StoreUnavailable("the token-budget store (Redis) is unreachable") from exc
            self._outage.warn("token-budget store unreachable, not counting tokens: %s", exc)
            return Reservation(tokens=estimated_tokens, degraded=True)
        values = [int(v) for v in raw]
        rows = [(values[1 + 3 * i], values[2 + 3 * i], values[3 + 3 * i]) for i in range(len(keys))]
        if values[0] != 1:
            raise _refusal(scopes, rows, estimated_tokens)
        return Reservation(
            tokens=estimated_tokens,
            keys=tuple(keys),
            windows=tuple(row[0] for row in rows),
            remaining=max(0, min(row[1] for row in rows)),
        )

    async def _adjust(self, reservation: Reservation, delta: int) -> None:
        try:
            await self._adjust_script(
                keys=list(reservation.keys), args=[delta, *reservation.windows]
            )
        except STORE_ERRORS as exc:
            # The answer has been given by now; failing it over bookkeeping helps nobody.
            log.warning("could not settle a token reservation (%+d tokens): %s", delta, exc)


class MemoryTokenBudget(_Base):
    """The same budgets in process memory (one server process). ``clock``: Unix seconds."""

    name = "memory"

    def __init__(
        self,
        tenant_rate: Rate | None,
        user_rate: Rate | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(tenant_rate, user_rate)
        self._clock = clock
        # key -> (window, tokens used in it, end of the window in µs)
        self._used: dict[str, tuple[int, int, int]] = {}

    async def reserve(
        self,
        tenant: str,
        user: str,
        estimated_tokens: int,
        *,
        on_store_down: StoreDownPolicy | None = None,
    ) -> Reservation:
        _check_tokens(estimated_tokens)
        scopes = _scopes(self._tenant_rate, self._user_rate, tenant, user)
        if not scopes:
            return Reservation(tokens=estimated_tokens)
        now = int(self._clock() * 1_000_000)
        rows: list[tuple[int, int, int]] = []
        used: list[int] = []
        for scope in scopes:
            window = now // scope.rate.period_us
            stored = self._used.get(scope.key)
            spent = stored[1] if stored is not None and stored[0] == window else 0
            used.append(spent)
            rows.append(
                (window, scope.rate.limit - spent, (window + 1) * scope.rate.period_us - now)
            )
        if any(row[1] < estimated_tokens for row in rows):
            raise _refusal(scopes, rows, estimated_tokens)
        if len(self._used) > 65536:
            # Ended windows are the same as no state; keep memory bounded by live ones.
            self._used = {k: v for k, v in self._used.items() if v[2] > now}
        for scope, row, spent in zip(scopes, rows, used, strict=True):
            self._used[scope.key] = (row[0], spent + estimated_tokens, now + row[2])
        return Reservation(
            tokens=estimated_tokens,
            keys=tuple(scope.key for scope in scopes),
            windows=tuple(row[0] for row in rows),
            remaining=min(row[1] for row in rows) - estimated_tokens,
        )

    async def _adjust(self, reservation: Reservation, delta: int) -> None:
        for key, window in zip(reservation.keys, reservation.windows, strict=True):
            stored = self._used.get(key)
            if stored is not None and stored[0] == window:
                self._used[key] = (window, max(0, stored[1] + delta), stored[2])
