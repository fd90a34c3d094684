"""The embedded default's own promises: a master key from a reference or a generated file,
refused when wrong, keys surviving a restart, retirement deleting the private half."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from obsigen.keys import KeyConfigError, KeyNotFound, KeyState, make_key_provider


async def test_master_key_from_a_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSIGEN_TEST_MASTER", "a long configured passphrase")
    uri = "software:master_key=env:OBSIGEN_TEST_MASTER"
    first = make_key_provider(uri, tmp_path)
    info = await first.create_signing_key("ES256")
    await first.aclose()
    assert not (tmp_path / "keys" / "master.key").exists()

    again = make_key_provider(uri, tmp_path)
    assert await again.verify(info.kid, b"m", await again.sign(info.kid, b"m"))
    await again.aclose()

    monkeypatch.setenv("OBSIGEN_TEST_MASTER", "another passphrase")
    wrong = make_key_provider(uri, tmp_path)
    with pytest.raises(KeyConfigError, match="master key does not open"):
        await wrong.sign(info.kid, b"m")


async def test_generated_master_key_is_reused_after_a_restart(tmp_path: Path) -> None:
    first = make_key_provider("software", tmp_path)
    info = await first.create_signing_key("RS256")
    kek = await first.create_kek()
    wrapped = await first.wrap(kek.kid, bytes(32), {"t": "1"})
    await first.aclose()
    master = tmp_path / "keys" / "master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600

    again = make_key_provider("software", tmp_path)
    assert [k.kid for k in await again.list_keys()] == [info.kid, kek.kid]
    assert await again.unwrap(kek.kid, wrapped, {"t": "1"}) == bytes(32)
    assert await again.verify(info.kid, b"m", await again.sign(info.kid, b"m"))
    await again.aclose()
    leftovers = [p.name for p in (tmp_path / "keys").iterdir() if p.name.startswith(".index")]
    assert leftovers == [], "an atomic index write left a temp file behind"


async def test_master_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    provider = make_key_provider("software", tmp_path)
    await provider.create_kek()
    await provider.aclose()
    (tmp_path / "keys" / "master.key").chmod(0o644)
    again = make_key_provider("software", tmp_path)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        await again.list_keys()


async def test_empty_or_missing_master_reference_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSIGEN_TEST_EMPTY", "")
    for uri in ("software:master_key=env:OBSIGEN_TEST_EMPTY", "software:master_key=env:NOPE_X"):
        with pytest.raises(KeyConfigError):
            await make_key_provider(uri, tmp_path).list_keys()


async def test_retiring_deletes_the_private_half(tmp_path: Path) -> None:
    provider = make_key_provider("software", tmp_path)
    info = await provider.create_signing_key("ES256")
    kek = await provider.create_kek()
    await provider.set_state(info.kid, KeyState.RETIRED)
    await provider.set_state(kek.kid, KeyState.RETIRED)
    keys_dir = tmp_path / "keys"
    assert not (keys_dir / f"{info.kid}.p8").exists()
    assert not (keys_dir / f"{kek.kid}.kek").exists()
    assert (keys_dir / f"{info.kid}.pub.pem").exists()
    assert (await provider.public_jwk(info.kid))["kid"] == info.kid
    await provider.aclose()


async def test_a_deleted_key_file_is_not_found_not_a_crash(tmp_path: Path) -> None:
    provider = make_key_provider("software", tmp_path)
    info = await provider.create_signing_key("ES256")
    await provider.aclose()
    (tmp_path / "keys" / f"{info.kid}.p8").unlink()
    again = make_key_provider("software", tmp_path)
    with pytest.raises(KeyNotFound):
        await again.sign(info.kid, b"m")
