"""GCRA (generic cell rate algorithm) request limits: one atomic decision over several scopes.

Each key stores one number, its theoretical arrival time (TAT). A request of ``cost`` moves the
TAT ``cost`` emission intervals (``period / limit``) ahead; it is refused when the new TAT
would lie more than ``limit`` intervals after now. That allows a burst of ``limit`` and then
one request per interval, with O(1) state and no background refill.

A decision covers every scope of a request (tenant, principal, endpoint) at once and is
all-or-nothing: a refusal by one scope consumes nothing from the others. The Redis limiter
makes it in one Lua script (one EVALSHA round trip) that reads the time with ``TIME`` on the
Redis server, so the clocks of the app servers never enter the result and the limit is exact
across any number of processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from obsigen.ephemeral.interfaces import StoreUnavailable
from obsigen.ratelimit.errors import RateLimited
from obsigen.ratelimit.rates import Rate

log = logging.getLogger(__name__)

StoreDownPolicy = Literal["closed", "open"]

# Errors that mean "Redis cannot be reached", as opposed to a bug in the script or the call.
STORE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for a request, described by its binding scope.

    Allowed: the scope with the fewest requests left. Refused: the scope that makes the caller
    wait longest. ``degraded`` marks a request let through only because the store was down
    and the policy is "open" (its numbers are then not real and no headers are sent).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: float
    retry_after_s: float
    period_s: int
    key: str
    degraded: bool = False

    def refusal(self) -> RateLimited:
        return RateLimited(
            f"rate limit of {self.limit} per {self.period_s} s reached; retry later",
            retry_after_s=self.retry_after_s,
            limit=self.limit,
            remaining=self.remaining,
            reset_after_s=self.reset_after_s,
            period_s=self.period_s,
        )


class RateLimiter(Protocol):
    name: str

    async def decide(
        self,
        limits: Sequence[Limit],
        cost: int = 1,
        *,
        on_store_down: StoreDownPolicy | None = None,
    ) -> Decision:
        """Count ``cost`` against every limit if all have room, else against none."""
        ...

    async def reset(self, *keys: str) -> None:
        """Forget the state of ``keys`` (full allowance again)."""
        ...


@dataclass(frozen=True, slots=True)
class _Scope:
    remaining: int
    reset_after_us: int
    retry_after_us: int


def _check(limits: Sequence[Limit], cost: int) -> None:
    if not limits:
        raise ValueError("a rate-limit decision needs at least one limit")
    if cost < 1:
        raise ValueError("cost must be at least 1")


def _decision(allowed: bool, limits: Sequence[Limit], scopes: Sequence[_Scope]) -> Decision:
    pairs = list(zip(limits, scopes, strict=True))
    if allowed:
        limit, scope = min(pairs, key=lambda p: (p[1].remaining, -p[1].reset_after_us))
    else:
        limit, scope = max(pairs, key=lambda p: p[1].retry_after_us)
    return Decision(
        allowed=allowed,
        limit=limit.rate.limit,
        remaining=max(0, scope.remaining),
        reset_after_s=scope.reset_after_us / 1e6,
        retry_after_s=scope.retry_after_us / 1e6,
        period_s=limit.rate.period_s,
        key=limit.key,
    )


class _Throttled:
    """Logs a store outage at most once per ``every_s``: an outage must not flood the logs."""

    def __init__(self, every_s: float = 10.0) -> None:
        self._every_s = every_s
        self._last = -every_s

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            log.warning(message, *args)


def _degraded(limits: Sequence[Limit]) -> Decision:
    first = limits[0]
    return Decision(
        allowed=True,
        limit=first.rate.limit,
        remaining=first.rate.limit,
        reset_after_s=0.0,
        retry_after_s=0.0,
        period_s=first.rate.period_s,
        key=first.key,
        degraded=True,
    )


# KEYS: one per scope. ARGV[1]: cost; then per scope its emission interval and tolerance (µs).
# Returns {allowed, then per scope: remaining, reset_after_us, retry_after_us}.
# Times are integers in µs (exact in Lua's doubles up to 2^53, i.e. for 285 years of epoch);
# stored with %.0f because tostring() would round them to 14 significant digits.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local n = #KEYS
local tat, new_tat, interval, tolerance = {}, {}, {}, {}
local ok = 1
for i = 1, n do
  interval[i] = tonumber(ARGV[2 * i])
  tolerance[i] = tonumber(ARGV[2 * i + 1])
  local stored = redis.call('GET', KEYS[i])
  local v = now
  if stored then v = math.max(tonumber(stored), now) end
  tat[i] = v
  new_tat[i] = v + interval[i] * cost
  if new_tat[i] - tolerance[i] > now then ok = 0 end
end
local out = {ok}
for i = 1, n do
  local basis = tat[i]
  local retry = 0
  if ok == 1 then
    basis = new_tat[i]
    local ttl_ms = math.floor((basis - now) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%.0f', basis), 'PX', string.format('%.0f', ttl_ms))
  else
    retry = math.max(0, new_tat[i] - tolerance[i] - now)
  end
  out[#out + 1] = math.max(0, math.floor((now - (basis - tolerance[i])) / interval[i]))
  out[#out + 1] = basis - now
  out[#out + 1] = retry
end
return out
"""


class RedisRateLimiter:
    """Shared by every server process using the same Redis: one EVALSHA per decision."""

    name = "redis"

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "obsigen:rl:",
        on_store_down: StoreDownPolicy = "closed",
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._on_store_down: StoreDownPolicy = on_store_down
        self._script = redis.register_script(_GCRA)
        self._outage = _Throttled()

    async def decide(
        self,
        limits: Sequence[Limit],
        cost: int = 1,
        *,
        on_store_down: StoreDownPolicy | None = None,
    ) -> Decision:
        _check(limits, cost)
        args: list[int] = [cost]
        for limit in limits:
            args += [limit.rate.emission_interval_us, limit.rate.tolerance_us]
        try:
            raw = await self._script(keys=[self._prefix + lim.key for lim in limits], args=args)
        except STORE_ERRORS as exc:
            if (on_store_down or self._on_store_down) == "closed":
                raise StoreUnavailable("the rate-limit store (Redis) is unreachable") from exc
            self._outage.warn("rate-limit store unreachable, letting requests through: %s", exc)
            return _degraded(limits)
        values = [int(v) for v in raw]
        scopes = [_Scope(*values[1 + 3 * i : 4 + 3 * i]) for i in range(len(limits))]
        return _decision(values[0] == 1, limits, scopes)

    async def reset(self, *keys: str) -> None:
        if not keys:
            return
        try:
            await self._redis.delete(*(self._prefix + key for key in keys))
        except STORE_ERRORS as exc:
            raise StoreUnavailable("the rate-limit store (Redis) is unreachable") from exc


class MemoryRateLimiter:
    """The same decisions in process memory: one server process (the embedded default)."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, int] = {}
        self._decisions = 0

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def _sweep(self, now: int) -> None:
        # A TAT in the past is the same as no state: drop those now and then so that keys of
        # idle callers do not accumulate without bound.
        self._decisions += 1
        if self._decisions % 4096 == 0:
            for key in [k for k, tat in self._tat.items() if tat <= now]:
                del self._tat[key]

    async def decide(
        self,
        limits: Sequence[Limit],
        cost: int = 1,
        *,
        on_store_down: StoreDownPolicy | None = None,
    ) -> Decision:
        # No await inside: the decision is atomic on the event loop, as the script is in Redis.
        _check(limits, cost)
        now = self._now_us()
        self._sweep(now)
        tats = [max(self._tat.get(lim.key, now), now) for lim in limits]
        new_tats = [
            tat + lim.rate.emission_interval_us * cost
            for tat, lim in zip(tats, limits, strict=True)
        ]
        allowed = all(
            new - lim.rate.tolerance_us <= now for new, lim in zip(new_tats, limits, strict=True)
        )
        scopes = []
        for lim, tat, new in zip(limits, tats, new_tats, strict=True):
            basis = new if allowed else tat
            if allowed:
                self._tat[lim.key] = new
            rate = lim.rate
            scopes.append(
                _Scope(
                    remaining=max(
                        0, (now - (basis - rate.tolerance_us)) // rate.emission_interval_us
                    ),
                    reset_after_us=basis - now,
                    retry_after_us=0 if allowed else max(0, new - rate.tolerance_us - now),
                )
            )
        return _decision(allowed, limits, scopes)

    async def reset(self, *keys: str) -> None:
        for key in keys:
            self._tat.pop(key, None)
