"""A login session as the stores keep it, and its flat string form (a Redis hash)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# 128 bits from secrets.token_urlsafe(16): exactly 22 url-safe characters. Checking the shape
# before any look-up keeps arbitrary caller input out of store keys.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
# RFC 8176 values are short tokens; a space separates them in the stored form, so none may
# contain one.
AMR_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")

# Field names of the stored form. The stores add their own private fields (idle deadline,
# refresh hashes) to the same hash; ``from_fields`` ignores those.
F_SESSION_ID = "sid"
F_TENANT = "tid"
F_USER = "uid"
F_AMR = "amr"
F_AUTH_TIME = "auth"
F_CREATED = "created"
F_EXPIRES = "exp"
RECORD_FIELDS = (F_SESSION_ID, F_TENANT, F_USER, F_AMR, F_AUTH_TIME, F_CREATED, F_EXPIRES)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str  # 128-bit random, url-safe
    tenant_id: str
    user_id: str
    amr: tuple[str, ...]  # authentication methods so far, e.g. ("pwd",) or ("pwd", "otp")
    auth_time: int  # epoch s of the latest authentication (step-up updates it)
    created_at: int
    expires_at: int  # absolute end (created_at + session_max_s)


def is_session_id(value: str) -> bool:
    return SESSION_ID_RE.fullmatch(value) is not None


def normalise_amr(methods: Iterable[str]) -> tuple[str, ...]:
    """Deduplicated, first occurrence first; ValueError for a value that cannot be stored."""
    seen: dict[str, None] = {}
    for method in methods:
        if not isinstance(method, str) or AMR_RE.fullmatch(method) is None:
            raise ValueError(f"invalid authentication method {method!r}")
        seen.setdefault(method, None)
    return tuple(seen)


def merge_amr(current: Iterable[str], added: Iterable[str]) -> tuple[str, ...]:
    return normalise_amr([*current, *added])


def to_fields(record: SessionRecord) -> dict[str, str]:
    return {
        F_SESSION_ID: record.session_id,
        F_TENANT: record.tenant_id,
        F_USER: record.user_id,
        F_AMR: " ".join(record.amr),
        F_AUTH_TIME: str(record.auth_time),
        F_CREATED: str(record.created_at),
        F_EXPIRES: str(record.expires_at),
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def from_fields(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> SessionRecord:
    """The record from its stored form; bytes (a Redis client without decode_responses) or str."""
    data = {_text(k): _text(v) for k, v in fields.items()}
    return SessionRecord(
        session_id=data[F_SESSION_ID],
        tenant_id=data[F_TENANT],
        user_id=data[F_USER],
        amr=tuple(data[F_AMR].split()),
        auth_time=int(data[F_AUTH_TIME]),
        created_at=int(data[F_CREATED]),
        expires_at=int(data[F_EXPIRES]),
    )
