"""Sessions in Redis: every server process sees every login, rotation and revocation at once.

Keys (``P`` is the prefix, ``obsigen:sess:`` by default):

* ``P s:<sid>``: hash of the record fields plus ``idle`` (idle deadline, ms), ``rh`` (SHA-256
  of the current refresh token), ``rexp`` (its deadline, ms) and ``gen`` (rotations so far).
  TTL: the idle deadline, which never passes the absolute end.
* ``P r:<sid>``: sorted set of the hashes of spent refresh tokens (score: rotation number),
  at most ``SPENT_HASHES_KEPT``. TTL: the session's absolute end.
* ``P u:<len(tenant)>:<tenant>:<user>``: set of the user's session ids. TTL: the latest
  absolute end among them. The byte length keeps ``("a:b", "c")`` and ``("a", "b:c")`` apart.

Each operation is one Lua script, so each is atomic and one round trip. The scripts build the
keys of other sessions from the prefix (end_all, sessions_of, the index on revocation): a
single Redis node or a primary with replicas, not Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from obsigen.ephemeral.interfaces import StoreUnavailable
from obsigen.sessions.records import (
    F_AMR,
    F_AUTH_TIME,
    F_EXPIRES,
    F_SESSION_ID,
    F_TENANT,
    F_USER,
    RECORD_FIELDS,
    SessionRecord,
    from_fields,
    to_fields,
)
from obsigen.sessions.store import SPENT_HASHES_KEPT, RotateOutcome, Rotation

T = TypeVar("T")
_Arg = str | int

_IDLE, _REFRESH_HASH, _REFRESH_DEADLINE, _GENERATION = "idle", "rh", "rexp", "gen"

# Helpers shared by every script. A session is live while now is before both its idle
# deadline and its absolute end; one past either is deleted when met.
_LIB = f"""
local FIELDS = {{{", ".join(f"'{f}'" for f in RECORD_FIELDS)}}}

local function fmt(n) return string.format('%d', n) end

local function state(key, now)
  local v = redis.call('HMGET', key, '{_IDLE}', '{F_EXPIRES}')
  if not v[1] or not v[2] then return 0 end
  if now >= tonumber(v[1]) or now >= tonumber(v[2]) * 1000 then return 2 end
  return 1
end

local function index_key(prefix, tid, uid)
  return prefix .. 'u:' .. string.len(tid) .. ':' .. tid .. ':' .. uid
end

local function drop(prefix, skey, rkey)
  local v = redis.call('HMGET', skey, '{F_SESSION_ID}', '{F_TENANT}', '{F_USER}')
  if v[1] and v[2] and v[3] then redis.call('SREM', index_key(prefix, v[2], v[3]), v[1]) end
  redis.call('DEL', skey, rkey)
end

local function extend(key, now, idle_ms)
  local deadline = math.min(now + idle_ms, tonumber(redis.call('HGET', key, '{F_EXPIRES}')) * 1000)
  redis.call('HSET', key, '{_IDLE}', fmt(deadline))
  redis.call('PEXPIRE', key, math.max(1, deadline - now))
end

local function record(key) return redis.call('HMGET', key, unpack(FIELDS)) end
"""

# KEYS: session, index. ARGV: now, idle deadline, absolute end (ms), sid, field/value pairs...
_CREATE = (
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(ARGV[2]) - now))
redis.call('SADD', KEYS[2], ARGV[4])
local ttl = math.max(1, tonumber(ARGV[3]) - now)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""
)

# KEYS: session, spent. ARGV: prefix, now, idle ms.
_TOUCH = (
    _LIB
    + """
local now = tonumber(ARGV[2])
local s = state(KEYS[1], now)
if s == 0 then return false end
if s == 2 then drop(ARGV[1], KEYS[1], KEYS[2]) return false end
extend(KEYS[1], now, tonumber(ARGV[3]))
return record(KEYS[1])
"""
)

# KEYS: session, spent. ARGV: prefix, now, idle ms, refresh ttl ms, presented, new, kept.
_ROTATE = (
    _LIB
    + f"""
local now = tonumber(ARGV[2])
local s = state(KEYS[1], now)
if s == 0 then return {{'unknown'}} end
if s == 2 then drop(ARGV[1], KEYS[1], KEYS[2]) return {{'expired'}} end
local cur = redis.call('HMGET', KEYS[1], '{_REFRESH_HASH}', '{_REFRESH_DEADLINE}', '{F_EXPIRES}')
if cur[1] == ARGV[5] then
  if now >= tonumber(cur[2]) then return {{'expired'}} end
  local ends = tonumber(cur[3]) * 1000
  local gen = redis.call('HINCRBY', KEYS[1], '{_GENERATION}', 1)
  redis.call('ZADD', KEYS[2], gen, ARGV[5])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[7]) + 1))
  redis.call('PEXPIRE', KEYS[2], math.max(1, ends - now))
  redis.call('HSET', KEYS[1], '{_REFRESH_HASH}', ARGV[6],
             '{_REFRESH_DEADLINE}', fmt(math.min(now + tonumber(ARGV[4]), ends)))
  extend(KEYS[1], now, tonumber(ARGV[3]))
  local r = record(KEYS[1])
  table.insert(r, 1, 'rotated')
  return r
end
if redis.call('ZSCORE', KEYS[2], ARGV[5]) then
  drop(ARGV[1], KEYS[1], KEYS[2])
  return {{'reused'}}
end
return {{'unknown'}}
"""
)

# KEYS: session, spent. ARGV: prefix, now, idle ms, auth_time, methods (space-separated).
_ADD_FACTORS = (
    _LIB
    + f"""
local now = tonumber(ARGV[2])
local s = state(KEYS[1], now)
if s == 0 then return false end
if s == 2 then drop(ARGV[1], KEYS[1], KEYS[2]) return false end
local amr = redis.call('HGET', KEYS[1], '{F_AMR}')
local have = {{}}
for m in string.gmatch(amr, '%S+') do have[m] = true end
for m in string.gmatch(ARGV[5], '%S+') do
  if not have[m] then
    if amr == '' then amr = m else amr = amr .. ' ' .. m end
    have[m] = true
  end
end
redis.call('HSET', KEYS[1], '{F_AMR}', amr, '{F_AUTH_TIME}', ARGV[4])
extend(KEYS[1], now, tonumber(ARGV[3]))
return record(KEYS[1])
"""
)

# KEYS: session, spent. ARGV: prefix, now.
_END = (
    _LIB
    + """
local s = state(KEYS[1], tonumber(ARGV[2]))
if s == 0 then return 0 end
drop(ARGV[1], KEYS[1], KEYS[2])
if s == 2 then return 0 end
return 1
"""
)

# KEYS: index. ARGV: prefix, now, tenant, user. The owner check means a revocation can never
# reach a session of someone else, whatever the index says.
_END_ALL = (
    _LIB
    + f"""
local now = tonumber(ARGV[2])
local n = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local skey = ARGV[1] .. 's:' .. sid
  local v = redis.call('HMGET', skey, '{F_TENANT}', '{F_USER}')
  if v[1] == ARGV[3] and v[2] == ARGV[4] then
    if state(skey, now) == 1 then n = n + 1 end
    redis.call('DEL', skey, ARGV[1] .. 'r:' .. sid)
  end
end
redis.call('DEL', KEYS[1])
return n
"""
)

# KEYS: index. ARGV: prefix, now, tenant, user. Prunes ids of sessions that ended unseen.
_SESSIONS_OF = (
    _LIB
    + f"""
local now = tonumber(ARGV[2])
local out = {{}}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local skey = ARGV[1] .. 's:' .. sid
  local v = redis.call('HMGET', skey, '{F_TENANT}', '{F_USER}')
  local s = state(skey, now)
  if s == 1 and v[1] == ARGV[3] and v[2] == ARGV[4] then
    table.insert(out, record(skey))
  else
    if s == 2 then redis.call('DEL', skey, ARGV[1] .. 'r:' .. sid) end
    redis.call('SREM', KEYS[1], sid)
  end
end
return out
"""
)


def _record(values: Sequence[Any]) -> SessionRecord:
    return from_fields(dict(zip(RECORD_FIELDS, values, strict=True)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisSessionStore:
    name = "redis"

    def __init__(self, redis: Redis, prefix: str = "obsigen:sess:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._create = redis.register_script(_CREATE)
        self._touch = redis.register_script(_TOUCH)
        self._rotate = redis.register_script(_ROTATE)
        self._add_factors = redis.register_script(_ADD_FACTORS)
        self._end = redis.register_script(_END)
        self._end_all = redis.register_script(_END_ALL)
        self._sessions_of = redis.register_script(_SESSIONS_OF)

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError) as exc:
            # Fail closed: an unanswerable revocation check must never read as "not revoked".
            raise StoreUnavailable("the session store (Redis) is unreachable") from exc

    def _session_keys(self, session_id: str) -> list[str]:
        return [f"{self._prefix}s:{session_id}", f"{self._prefix}r:{session_id}"]

    def _index_key(self, tenant_id: str, user_id: str) -> str:
        # Byte length, as Lua's string.len counts it when it rebuilds this key.
        return f"{self._prefix}u:{len(tenant_id.encode())}:{tenant_id}:{user_id}"

    async def create(
        self,
        record: SessionRecord,
        *,
        refresh_hash: str,
        now_ms: int,
        idle_deadline_ms: int,
        refresh_deadline_ms: int,
    ) -> bool:
        fields = to_fields(record) | {
            _IDLE: str(idle_deadline_ms),
            _REFRESH_HASH: refresh_hash,
            _REFRESH_DEADLINE: str(refresh_deadline_ms),
            _GENERATION: "0",
        }
        pairs = [x for item in fields.items() for x in item]
        keys = [
            self._session_keys(record.session_id)[0],
            self._index_key(record.tenant_id, record.user_id),
        ]
        args: list[_Arg] = [
            now_ms,
            idle_deadline_ms,
            record.expires_at * 1000,
            record.session_id,
            *pairs,
        ]
        done = await self._call(lambda: self._create(keys=keys, args=args))
        return bool(done)

    async def touch(
        self, session_id: str, *, now_ms: int, idle_timeout_ms: int
    ) -> SessionRecord | None:
        args: list[_Arg] = [self._prefix, now_ms, idle_timeout_ms]
        keys = self._session_keys(session_id)
        values = await self._call(lambda: self._touch(keys=keys, args=args))
        return None if values is None else _record(values)

    async def rotate(
        self,
        session_id: str,
        *,
        presented_hash: str,
        new_hash: str,
        now_ms: int,
        idle_timeout_ms: int,
        refresh_ttl_ms: int,
    ) -> Rotation:
        args: list[_Arg] = [
            self._prefix,
            now_ms,
            idle_timeout_ms,
            refresh_ttl_ms,
            presented_hash,
            new_hash,
            SPENT_HASHES_KEPT,
        ]
        keys = self._session_keys(session_id)
        reply = await self._call(lambda: self._rotate(keys=keys, args=args))
        outcome = RotateOutcome(_text(reply[0]))
        if outcome is RotateOutcome.ROTATED:
            return Rotation(outcome, _record(reply[1:]))
        return Rotation(outcome)

    async def add_factors(
        self,
        session_id: str,
        methods: tuple[str, ...],
        *,
        auth_time: int,
        now_ms: int,
        idle_timeout_ms: int,
    ) -> SessionRecord | None:
        args: list[_Arg] = [self._prefix, now_ms, idle_timeout_ms, auth_time, " ".join(methods)]
        keys = self._session_keys(session_id)
        values = await self._call(lambda: self._add_factors(keys=keys, args=args))
        return None if values is None else _record(values)

    async def end(self, session_id: str, *, now_ms: int) -> bool:
        keys = self._session_keys(session_id)
        args: list[_Arg] = [self._prefix, now_ms]
        ended = await self._call(lambda: self._end(keys=keys, args=args))
        return bool(ended)

    async def end_all(self, tenant_id: str, user_id: str, *, now_ms: int) -> int:
        keys = [self._index_key(tenant_id, user_id)]
        args: list[_Arg] = [self._prefix, now_ms, tenant_id, user_id]
        count = await self._call(lambda: self._end_all(keys=keys, args=args))
        return int(count)

    async def sessions_of(
        self, tenant_id: str, user_id: str, *, now_ms: int
    ) -> list[SessionRecord]:
        keys = [self._index_key(tenant_id, user_id)]
        args: list[_Arg] = [self._prefix, now_ms, tenant_id, user_id]
        rows = await self._call(lambda: self._sessions_of(keys=keys, args=args))
        return sorted((_record(row) for row in rows), key=lambda r: (r.created_at, r.session_id))

    async def aclose(self) -> None:
        # The Redis client belongs to Services, which closes it.
        return None
