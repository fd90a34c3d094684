"""Rotation ages: how old each credential is against its maximum (docs/secrets.md).

States: ``ok``; ``warn`` from ``[secrets] warn_fraction`` (80 %) of the maximum; ``expired``
past it; ``unknown`` when the age cannot be read; ``not configured`` when there is nothing
to rotate. ``enforce_rotation`` refuses a start with an expired signing key, KEK or database
credential. API keys and SCIM tokens are not in that list: every one carries an expiry no
later than its maximum age (``auth.apikey_max_days``, ``secrets.max_age_days.scim_token``)
after its creation and authentication refuses it from then on, so an old one stops working by
itself; the report only warns before that happens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.config import Settings
from obsigen.keys.interfaces import KeyInfo, KeyProvider, KeyState

Kind = Literal["signing_key", "kek", "api_key", "scim_token", "db_credential"]
# Kinds whose expiry stops the server: nothing else would stop them being used.
BLOCKING_KINDS: frozenset[str] = frozenset({"signing_key", "kek", "db_credential"})
_DAY_S = 86_400.0


class RotationState(StrEnum):
    OK = "ok"
    WARN = "warn"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    NOT_CONFIGURED = "not configured"


@dataclass(frozen=True, slots=True)
class RotationItem:
    kind: Kind
    name: str  # a key id, an API key's id and name, or a summary; never a secret
    age_days: float | None
    max_days: float | None
    state: RotationState
    note: str = ""

    @property
    def blocks_start(self) -> bool:
        return self.state is RotationState.EXPIRED and self.kind in BLOCKING_KINDS

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["state"] = self.state.value
        row["blocks_start"] = self.blocks_start
        return row


class RotationExpired(RuntimeError):
    """Raised at start-up when a credential that nothing else stops is past its maximum age."""


def age_state(age: timedelta, max_age: timedelta, warn_fraction: float) -> RotationState:
    if age > max_age:
        return RotationState.EXPIRED
    if age >= max_age * warn_fraction:
        return RotationState.WARN
    return RotationState.OK


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / _DAY_S, 2)


def key_items(
    kind: Literal["signing_key", "kek"],
    infos: Sequence[KeyInfo],
    max_days: int,
    warn_fraction: float,
    now: datetime,
) -> list[RotationItem]:
    """One item per active key of ``kind``: verify-only keys sign or wrap nothing, so their age
    no longer matters (they retire on their own schedule)."""
    use = "sig" if kind == "signing_key" else "enc"
    active = [info for info in infos if info.use == use and info.state is KeyState.ACTIVE]
    if not active:
        return [
            RotationItem(kind, "-", None, max_days, RotationState.NOT_CONFIGURED, "no active key")
        ]
    max_age = timedelta(days=max_days)
    command = "signing" if kind == "signing_key" else "kek"
    items = []
    for info in active:
        age = now - info.created_at
        state = age_state(age, max_age, warn_fraction)
        note = f"obsigen keys rotate --kind {command}" if state is not RotationState.OK else ""
        items.append(RotationItem(kind, info.kid, _days(age), max_days, state, note))
    return items


async def _provider_items(
    kind: Literal["signing_key", "kek"],
    provider: KeyProvider | None,
    uri: str,
    settings: Settings,
    now: datetime,
) -> list[RotationItem]:
    max_days = getattr(settings.secrets.max_age_days, kind)
    owned = provider is None
    try:
        if provider is None:
            from obsigen.keys.factory import make_key_provider

            provider = make_key_provider(uri, settings.paths.data_dir)
        try:
            infos = await provider.list_keys()
        finally:
            if owned:
                await provider.aclose()
    except Exception as exc:  # noqa: BLE001 - an unreadable provider is reported, not fatal here
        note = f"cannot list keys: {type(exc).__name__}"
        return [
            RotationItem(kind, uri.partition(":")[0], None, max_days, RotationState.UNKNOWN, note)
        ]
    return key_items(kind, infos, max_days, settings.secrets.warn_fraction, now)


@dataclass(frozen=True, slots=True)
class _Credential:
    """A live credential as the rotation check sees it: when it was made and when it ends."""

    label: str
    created_at: datetime
    ends: datetime


def _credential_items(
    kind: Kind,
    credentials: Sequence[_Credential],
    max_days: int,
    warn_fraction: float,
    now: datetime,
    *,
    plural: str,
    advice: str,
) -> list[RotationItem]:
    """Credentials past ``warn_fraction`` of their own lifetime, or one summary item."""
    warned: list[RotationItem] = []
    active = 0
    oldest = timedelta(0)
    for credential in credentials:
        if credential.ends <= now:
            continue
        active += 1
        age = now - credential.created_at
        oldest = max(oldest, age)
        lifetime = credential.ends - credential.created_at
        if age_state(age, lifetime, warn_fraction) is RotationState.WARN:
            note = f"expires {credential.ends.isoformat()}: {advice}"
            warned.append(
                RotationItem(
                    kind, credential.label, _days(age), _days(lifetime), RotationState.WARN, note
                )
            )
    if warned:
        return warned
    if not active:
        return [
            RotationItem(
                kind, "-", None, max_days, RotationState.NOT_CONFIGURED, f"no active {plural}"
            )
        ]
    return [
        RotationItem(
            kind,
            f"all {active} active {plural}",
            _days(oldest),
            max_days,
            RotationState.OK,
            f"oldest {plural[:-1]} shown",
        )
    ]


async def _read_items(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession] | None,
    now: datetime,
    read: Callable[[AsyncSession, Settings, datetime], Awaitable[list[RotationItem]]],
    *,
    kind: Kind,
    max_days: int,
    what: str,
) -> list[RotationItem]:
    engine = None
    try:
        if sessions is None:
            from obsigen.db.engine import make_engine

            engine = make_engine(settings.database_url, settings.storage.database_password)
            sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            return await read(session, settings, now)
    except Exception as exc:  # noqa: BLE001 - e.g. not migrated yet; reported, not fatal here
        note = f"cannot read {what}: {type(exc).__name__}"
        return [RotationItem(kind, "-", None, max_days, RotationState.UNKNOWN, note)]
    finally:
        if engine is not None:
            await engine.dispose()


async def api_key_items(
    session: AsyncSession, settings: Settings, now: datetime
) -> list[RotationItem]:
    """Active keys past ``warn_fraction`` of their own lifetime, or one summary item.

    A key's lifetime is ``expires_at - created_at`` (at most ``auth.apikey_max_days``); keys
    already expired or revoked are refused at authentication and not listed.
    """
    from obsigen.db.models import ApiKey

    max_age = timedelta(days=settings.auth.apikey_max_days)
    rows = (await session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)))).all()
    credentials = [
        _Credential(
            f"{row.id} ({row.name})",
            row.created_at,
            row.created_at
            + min((row.expires_at or row.created_at + max_age) - row.created_at, max_age),
        )
        for row in rows
    ]
    return _credential_items(
        "api_key",
        credentials,
        settings.auth.apikey_max_days,
        settings.secrets.warn_fraction,
        now,
        plural="keys",
        advice="create a new key",
    )


def db_credential_item(settings: Settings, now: datetime) -> RotationItem:
    max_days = settings.secrets.max_age_days.db_credential
    if not settings.storage.database_url or settings.database_url.startswith("sqlite"):
        return RotationItem(
            "db_credential",
            "sqlite (embedded)",
            None,
            max_days,
            RotationState.NOT_CONFIGURED,
            "no credential",
        )
    rotated = settings.secrets.db_credential_rotated_at
    if rotated is None:
        return RotationItem(
            "db_credential",
            "storage.database_url",
            None,
            max_days,
            RotationState.UNKNOWN,
            "set [secrets] db_credential_rotated_at to the date the password last changed",
        )
    age = now - datetime.combine(rotated, time.min, tzinfo=UTC)
    state = age_state(age, timedelta(days=max_days), settings.secrets.warn_fraction)
    note = "" if state is RotationState.OK else "rotate the password, then update the date"
    return RotationItem("db_credential", "storage.database_url", _days(age), max_days, state, note)


async def scim_token_items(
    session: AsyncSession, settings: Settings, now: datetime
) -> list[RotationItem]:
    """Like API keys: SCIM tokens past ``warn_fraction`` of their lifetime, or one summary.

    A token's lifetime is ``expires_at - created_at``, capped by
    ``secrets.max_age_days.scim_token``, which verification also enforces on every use.
    """
    from obsigen.db.scim_models import ScimToken

    max_days = settings.secrets.max_age_days.scim_token
    max_age = timedelta(days=max_days)
    rows = (await session.scalars(select(ScimToken).where(ScimToken.revoked_at.is_(None)))).all()
    credentials = [
        _Credential(
            f"{row.id} ({row.name})", row.created_at, min(row.expires_at, row.created_at + max_age)
        )
        for row in rows
    ]
    return _credential_items(
        "scim_token",
        credentials,
        max_days,
        settings.secrets.warn_fraction,
        now,
        plural="tokens",
        advice="obsigen scim token create, then revoke this one",
    )


async def rotation_report(
    settings: Settings,
    *,
    signing: KeyProvider | None = None,
    kek: KeyProvider | None = None,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    now: datetime | None = None,
) -> list[RotationItem]:
    """Every credential with its age, maximum and state.

    Providers and the session factory default to new ones made from ``settings`` (closed
    again here); the server passes its own so nothing is opened twice.
    """
    now = now or datetime.now(UTC)
    return [
        *await _provider_items("signing_key", signing, settings.keys.signing, settings, now),
        *await _provider_items("kek", kek, settings.keys.kek, settings, now),
        *await _read_items(
            settings,
            sessions,
            now,
            api_key_items,
            kind="api_key",
            max_days=settings.auth.apikey_max_days,
            what="API keys",
        ),
        *await _read_items(
            settings,
            sessions,
            now,
            scim_token_items,
            kind="scim_token",
            max_days=settings.secrets.max_age_days.scim_token,
            what="SCIM tokens",
        ),
        db_credential_item(settings, now),
    ]


def enforce_rotation(report: Sequence[RotationItem]) -> None:
    """Refuse to start (RotationExpired) when any blocking credential is past its maximum."""
    expired = [item for item in report if item.blocks_start]
    if expired:
        listed = "; ".join(
            f"{item.kind} {item.name} is {item.age_days} days old (max {item.max_days})"
            + (f": {item.note}" if item.note else "")
            for item in expired
        )
        raise RotationExpired(f"refusing to start, credentials past their rotation age: {listed}")


def warnings(report: Sequence[RotationItem]) -> list[RotationItem]:
    return [item for item in report if item.state is RotationState.WARN]
