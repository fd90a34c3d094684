"""`obsigen tenant erase` and `obsigen keys rewrap`, driven as an operator would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from obsigen.config import load_settings
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.tenant_keys_models import TenantDataKey
from obsigen.identity.tenants import tenant_by_name
from obsigen.keys import make_key_provider
from obsigen.tenantkeys.cipher import TenantCipher
from obsigen.tenantkeys.keyring import TenantKeyring

OBSIGEN = str(Path(sys.executable).parent / "obsigen")
NAMES = {"table": "messages", "column": "content", "row_id": "r"}


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OBSIGEN_PATHS__DATA_DIR": str(data_dir)}
    env.pop("OBSIGEN_CONFIG", None)
    return subprocess.run(
        [OBSIGEN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def seal(data_dir: Path, name: str) -> tuple[str, str]:
    settings = load_settings(paths={"data_dir": data_dir})
    engine = make_engine(settings.database_url)
    provider = make_key_provider("software", data_dir)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            tenant_id = (await tenant_by_name(session, name)).id
        cipher = TenantCipher(TenantKeyring(provider, sessions, ttl_s=0))
        return tenant_id, await cipher.encrypt_text(tenant_id, "board minutes", **NAMES)
    finally:
        await provider.aclose()
        await engine.dispose()


async def key_rows(data_dir: Path, tenant_id: str) -> list[TenantDataKey]:
    engine = make_engine(load_settings(paths={"data_dir": data_dir}).database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            query = select(TenantDataKey).where(TenantDataKey.tenant_id == tenant_id)
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()


def test_kek_rotation_rewraps_and_erase_shreds(tmp_path: Path) -> None:
    assert cli(tmp_path, "migrate").returncode == 0
    assert cli(tmp_path, "tenant", "create", "acme").returncode == 0
    tenant_id, _ = asyncio.run(seal(tmp_path, "acme"))
    (before,) = asyncio.run(key_rows(tmp_path, tenant_id))

    rotated = cli(tmp_path, "keys", "rotate", "--kind", "kek")
    assert rotated.returncode == 0, rotated.stderr
    assert "1 re-wrapped" in rotated.stdout
    (after,) = asyncio.run(key_rows(tmp_path, tenant_id))
    assert after.kek_id != before.kek_id
    assert after.wrapped != before.wrapped
    assert "0 re-wrapped" in cli(tmp_path, "keys", "rewrap").stdout

    refused = cli(tmp_path, "tenant", "erase", "acme")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    erased = cli(tmp_path, "tenant", "erase", "acme", "--yes", "--json")
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["keys_destroyed"] == 1
    (gone,) = asyncio.run(key_rows(tmp_path, tenant_id))
    assert gone.wrapped is None
    assert gone.state == "destroyed"
    again = cli(tmp_path, "tenant", "erase", "acme", "--yes")
    assert again.returncode == 2
    assert "Traceback" not in again.stderr
