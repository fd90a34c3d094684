"""``obsigen retention run`` as operators run it: a subprocess on a fresh data dir (SQLite,
local object store, file audit sink), configured through the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.retention.retention_data import (
    add_conversation,
    add_file,
    days_ago,
    row_exists,
)

from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.files_models import StoredFile
from obsigen.db.models import Conversation
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import ObjectKey

OBSIGEN = Path(sys.executable).parent / "obsigen"


def obsigen(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OBSIGEN_")}
    env["OBSIGEN_PATHS__DATA_DIR"] = str(data_dir)
    # A per-tenant override through the environment, as a container would set it.
    env["OBSIGEN_RETENTION__TENANT_OVERRIDES"] = json.dumps({"acme": {"conversations_days": 7}})
    return subprocess.run(
        [str(OBSIGEN), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir.parent,
        timeout=180,
        check=False,
    )


def one_json_object(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stdout.strip().splitlines()) == 1
    payload = json.loads(done.stdout)
    assert isinstance(payload, dict)
    return payload


async def test_retention_run_dry_run_json_then_for_real(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    assert obsigen(data_dir, "migrate").returncode == 0
    tenant_id = one_json_object(obsigen(data_dir, "tenant", "create", "acme", "--json"))["id"]
    other_id = one_json_object(obsigen(data_dir, "tenant", "create", "other", "--json"))["id"]
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'obsigen.db'}")
    sessions = make_sessionmaker(engine)
    store = LocalObjectStore(data_dir / "objects")
    try:
        old = await add_conversation(sessions, tenant_id, days_ago(10), messages=2, tool_calls=1)
        kept = await add_conversation(sessions, other_id, days_ago(10))
        file_id = await add_file(sessions, store, tenant_id, days_ago(400))

        payload = one_json_object(obsigen(data_dir, "retention", "run", "--dry-run", "--json"))
        assert payload["dry_run"] is True
        assert payload["audit"] == []
        by_name = {entry["tenant"]: entry for entry in payload["tenants"]}
        assert by_name["acme"]["tenant_id"] == tenant_id
        assert by_name["acme"]["removed"] == {
            "conversations": 1,
            "messages": 2,
            "tool_calls": 1,
            "files": 1,
            "artifacts": 0,
            "pending_files": 0,
        }
        assert by_name["other"]["removed"]["conversations"] == 0
        assert await row_exists(sessions, Conversation, old)
        assert await row_exists(sessions, StoredFile, file_id)

        payload = one_json_object(
            obsigen(data_dir, "retention", "run", "--tenant", "acme", "--json")
        )
        assert payload["dry_run"] is False
        assert [entry["tenant"] for entry in payload["tenants"]] == ["acme"]
        assert payload["tenants"][0]["removed"]["conversations"] == 1
        assert not await row_exists(sessions, Conversation, old)
        assert not await row_exists(sessions, StoredFile, file_id)
        assert not store.path_of(ObjectKey(tenant_id, file_id)).exists()
        assert await row_exists(sessions, Conversation, kept)
    finally:
        await engine.dispose()

    events = [
        json.loads(line)
        for line in (data_dir / "audit" / f"{tenant_id}.jsonl").read_text().splitlines()
    ]
    purges = [event for event in events if event["type"] == "retention.purge"]
    assert len(purges) == 1
    assert purges[0]["actor"]["kind"] == "cli"
    assert purges[0]["data"]["removed"]["files"] == 1

    done = obsigen(data_dir, "retention", "run", "--tenant", "nope")
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown tenant")
