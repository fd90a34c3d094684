"""``obsigen scim token create|list|revoke`` as operators run them (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.scim.tokens import verify_token

OBSIGEN = Path(sys.executable).parent / "obsigen"
TOKEN_SHAPE = re.compile(r"^scim_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OBSIGEN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_create_list_revoke(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OBSIGEN_")}
    env["OBSIGEN_PATHS__DATA_DIR"] = str(data_dir)
    assert run(env, "migrate").returncode == 0
    assert run(env, "tenant", "create", "acme").returncode == 0

    plain = run(env, "scim", "token", "create", "--tenant", "acme", "--name", "okta")
    assert plain.returncode == 0, plain.stderr
    token = plain.stdout.strip().splitlines()[-1]  # the credential alone on the last line
    assert TOKEN_SHAPE.fullmatch(token)
    too_long = run(env, "scim", "token", "create", "--tenant", "acme", "--expires-in", "400d")
    assert too_long.returncode != 0
    assert "at most 365 days" in too_long.stderr

    listed = run(env, "scim", "token", "list", "--tenant", "acme", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["name"] for row in rows] == ["okta"]
    assert token not in listed.stdout

    engine = make_engine(f"sqlite+aiosqlite:///{data_dir}/obsigen.db")
    sessions = make_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            assert await verify_token(session, token, max_age=timedelta(days=365)) is not None
        revoked = run(env, "scim", "token", "revoke", "--tenant", "acme", rows[0]["id"])
        assert revoked.returncode == 0, revoked.stderr
        async with sessions.begin() as session:
            assert await verify_token(session, token, max_age=timedelta(days=365)) is None
    finally:
        await engine.dispose()
