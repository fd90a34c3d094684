"""Rotation ages: ok / warn / expired against each maximum, and the start-up refusal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from obsigen.config import Settings
from obsigen.doctor import format_rotation
from obsigen.keys.interfaces import KeyInfo, KeyState
from obsigen.secrets.rotation import (
    RotationExpired,
    RotationItem,
    RotationState,
    db_credential_item,
    enforce_rotation,
    rotation_report,
    warnings,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class FakeProvider:
    """Only what the report reads: the key list."""

    name = "fake"

    def __init__(self, infos: list[KeyInfo]) -> None:
        self.infos = infos

    async def list_keys(self) -> list[KeyInfo]:
        return self.infos

    async def aclose(self) -> None:
        return None


def _key(kid: str, use: str, age: timedelta, state: KeyState = KeyState.ACTIVE) -> KeyInfo:
    alg = "ES256" if use == "sig" else "A256GCM"
    return KeyInfo(kid, alg, "sig" if use == "sig" else "enc", NOW - age, state)  # type: ignore[arg-type]


def _settings(tmp_path: Path, **fields: object) -> Settings:
    return Settings(paths={"data_dir": tmp_path / "data"}, **fields)  # type: ignore[arg-type]


async def _report(
    tmp_path: Path, signing: list[KeyInfo], kek: list[KeyInfo], **fields: object
) -> list[RotationItem]:
    return await rotation_report(
        _settings(tmp_path, **fields),
        signing=FakeProvider(signing),  # type: ignore[arg-type]
        kek=FakeProvider(kek),  # type: ignore[arg-type]
        now=NOW,
    )


def _by(report: list[RotationItem], kind: str) -> list[RotationItem]:
    return [item for item in report if item.kind == kind]


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, RotationState.OK), (0.85, RotationState.WARN), (1.10, RotationState.EXPIRED)],
)
async def test_key_states_at_0_85_and_110_percent(
    tmp_path: Path, fraction: float, expected: RotationState
) -> None:
    signing = [_key("sig-a", "sig", timedelta(days=180) * fraction)]
    kek = [_key("kek-a", "enc", timedelta(days=365) * fraction)]
    report = await _report(tmp_path, signing, kek)
    (sig_item,) = _by(report, "signing_key")
    (kek_item,) = _by(report, "kek")
    assert (sig_item.state, kek_item.state) == (expected, expected)
    assert sig_item.max_days == 180
    assert kek_item.max_days == 365
    assert sig_item.age_days == pytest.approx(180 * fraction, abs=0.01)
    if expected is RotationState.OK:
        enforce_rotation(report)
    else:
        assert "obsigen keys rotate --kind signing" in sig_item.note


async def test_enforce_rotation_refuses_an_expired_signing_key(tmp_path: Path) -> None:
    report = await _report(
        tmp_path,
        [_key("sig-old", "sig", timedelta(days=200)), _key("sig-new", "sig", timedelta(days=1))],
        [_key("kek-a", "enc", timedelta(days=10))],
    )
    assert [item.blocks_start for item in _by(report, "signing_key")] == [True, False]
    with pytest.raises(RotationExpired, match="signing_key sig-old") as raised:
        enforce_rotation(report)
    assert "sig-new" not in str(raised.value)


async def test_warn_does_not_block_and_non_active_keys_are_ignored(tmp_path: Path) -> None:
    report = await _report(
        tmp_path,
        [
            _key("sig-demoted", "sig", timedelta(days=400), KeyState.VERIFY_ONLY),
            _key("sig-warm", "sig", timedelta(days=160)),
        ],
        [],
    )
    (item,) = _by(report, "signing_key")
    assert item.name == "sig-warm"
    assert item.state is RotationState.WARN
    assert _by(report, "kek")[0].state is RotationState.NOT_CONFIGURED
    assert warnings(report) == [item]
    enforce_rotation(report)


async def test_custom_maxima_and_warn_fraction(tmp_path: Path) -> None:
    signing = [_key("sig-a", "sig", timedelta(days=50))]
    secrets_section = {"max_age_days": {"signing_key": 60}, "warn_fraction": 0.9}
    report = await _report(tmp_path, signing, [], secrets=secrets_section)
    assert _by(report, "signing_key")[0].state is RotationState.OK  # 83 % < 90 %
    report = await _report(tmp_path, signing, [], secrets={"max_age_days": {"signing_key": 45}})
    assert _by(report, "signing_key")[0].state is RotationState.EXPIRED


async def test_an_unreachable_provider_is_unknown_not_fatal(tmp_path: Path) -> None:
    class Broken(FakeProvider):
        async def list_keys(self) -> list[KeyInfo]:
            raise ConnectionError("hsm gone")

    report = await rotation_report(
        _settings(tmp_path),
        signing=Broken([]),
        kek=FakeProvider([]),
        now=NOW,  # type: ignore[arg-type]
    )
    item = _by(report, "signing_key")[0]
    assert item.state is RotationState.UNKNOWN
    assert "ConnectionError" in item.note
    enforce_rotation(report)


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, RotationState.OK), (0.85, RotationState.WARN), (1.10, RotationState.EXPIRED)],
)
def test_db_credential_age_from_the_configured_date(
    tmp_path: Path, fraction: float, expected: RotationState
) -> None:
    rotated = (NOW - timedelta(days=90) * fraction).date()
    settings = _settings(
        tmp_path,
        storage={"database_url": "mysql+asyncmy://obsigen@db.internal:3306/obsigen"},
        secrets={"db_credential_rotated_at": rotated.isoformat()},
    )
    item = db_credential_item(settings, NOW)
    assert item.state is expected
    assert item.blocks_start is (expected is RotationState.EXPIRED)
    if expected is RotationState.EXPIRED:
        with pytest.raises(RotationExpired, match="db_credential"):
            enforce_rotation([item])


def test_db_credential_without_a_date_is_unknown_and_sqlite_has_none(tmp_path: Path) -> None:
    mysql = _settings(tmp_path, storage={"database_url": "mysql+asyncmy://o@h:3306/o"})
    item = db_credential_item(mysql, NOW)
    assert item.state is RotationState.UNKNOWN
    assert "db_credential_rotated_at" in item.note
    sqlite = _settings(tmp_path, secrets={"db_credential_rotated_at": date(2000, 1, 1)})
    assert db_credential_item(sqlite, NOW).state is RotationState.NOT_CONFIGURED


async def test_report_lists_every_kind_and_the_doctor_prints_it(tmp_path: Path) -> None:
    report = await _report(
        tmp_path,
        [_key("sig-a", "sig", timedelta(days=170))],
        [_key("kek-a", "enc", timedelta(days=3))],
    )
    assert [item.kind for item in report] == [
        "signing_key",
        "kek",
        "api_key",
        "scim_token",
        "db_credential",
    ]
    # No database has been migrated under tmp_path: reported, not raised.
    assert _by(report, "api_key")[0].state is RotationState.UNKNOWN
    assert _by(report, "scim_token")[0].state is RotationState.UNKNOWN
    lines = format_rotation(report)
    assert lines[0] == "rotation"
    assert any("signing_key" in line and "warn" in line and "170/180" in line for line in lines)
    assert report[0].as_dict()["state"] == "warn"
    assert report[0].as_dict()["blocks_start"] is False
