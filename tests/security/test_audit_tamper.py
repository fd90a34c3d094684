"""Tampering with the stored audit trail is found by `obsigen audit verify`, which names the
first bad event; on SQLite and MariaDB, through real chat turns and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.conftest import Platform, platform_settings, running_platform
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.audit.chain import make_entry
from obsigen.audit.db_store import DatabaseAuditSink
from obsigen.audit.events import AuditEvent
from obsigen.db.engine import make_engine
from obsigen.db.migrate import upgrade_to_head
from obsigen.identity.tenants import tenant_by_name

OBSIGEN = Path(sys.executable).parent / "obsigen"
TURNS = 3


@dataclass(frozen=True)
class Row:
    seq: int
    event_id: str
    event_type: str
    record: str
    hash: str


@dataclass(frozen=True)
class Audited:
    name: str
    tenant_id: str
    rows: list[Row]


@dataclass(frozen=True)
class Expected:
    seq: int
    event_id: str | None
    words: str


@pytest.fixture
async def platform(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    """The shared platform, but on SQLite with a database file of its own: these tests run the
    CLI in a second process against the database, and a file shared with the rest of the
    session made them wait on whatever else held its write lock."""
    if database_url.startswith("sqlite"):
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'audit-tamper.db'}"
        engine = make_engine(database_url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()
    settings = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    async with running_platform(settings, upstream) as running:
        yield running


def obsigen(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OBSIGEN_")}
    env["OBSIGEN_STORAGE__DATABASE_URL"] = platform.settings.database_url
    env["OBSIGEN_PATHS__DATA_DIR"] = str(platform.settings.paths.data_dir)
    return subprocess.run(
        [str(OBSIGEN), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


async def rows_of(platform: Platform, tenant_id: str) -> list[Row]:
    async with platform.services.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT seq, event_id, event_type, record, hash FROM audit_events "
                "WHERE tenant_id = :t ORDER BY seq"
            ),
            {"t": tenant_id},
        )
        return [Row(*row) for row in result.all()]


async def audited(platform: Platform, *, secret: str = "") -> Audited:
    name = await platform.tenant("audit")
    key = await platform.api_key(name)
    for turn in range(1, TURNS + 1):
        response = await platform.chat(key, f"Hello turn {turn} {secret}".strip())
        assert response.status_code == 200, response.text
    async with platform.services.sessions.begin() as session:
        tenant_id = (await tenant_by_name(session, name)).id
    rows = await rows_of(platform, tenant_id)
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= TURNS * 4
    return Audited(name, tenant_id, rows)


async def sql(platform: Platform, statement: str, **params: object) -> None:
    async with platform.services.engine.begin() as conn:
        await conn.execute(text(statement), params)


# --- the five ways ------------------------------------------------------------------------------


async def modify(platform: Platform, log: Audited) -> Expected:
    target = [row for row in log.rows if row.event_type == "chat.prompt"][1]
    assert "Hello turn 2" in target.record
    await sql(
        platform,
        "UPDATE audit_events SET record = :r WHERE tenant_id = :t AND seq = :s",
        r=target.record.replace("Hello turn 2", "Goodbye turn 2"),
        t=log.tenant_id,
        s=target.seq,
    )
    return Expected(target.seq, target.event_id, "modified")


async def delete(platform: Platform, log: Audited) -> Expected:
    middle = log.rows[len(log.rows) // 2]
    await sql(
        platform,
        "DELETE FROM audit_events WHERE tenant_id = :t AND seq = :s",
        t=log.tenant_id,
        s=middle.seq,
    )
    return Expected(middle.seq, None, "missing")


async def insert(platform: Platform, log: Audited) -> Expected:
    # The strongest attacker without the signing key: a forged event with a valid hash,
    # later rows renumbered and the head moved along.
    at = len(log.rows) // 2
    before = log.rows[at - 1]
    forged_event = AuditEvent(
        type="chat.prompt",
        tenant_id=log.tenant_id,
        actor={"kind": "user", "id": "someone-else"},
        outcome="success",
        data={"content": "I never said this"},
    )
    forged = make_entry(forged_event.to_json(), before.seq + 1, before.hash)
    for row in reversed(log.rows[at:]):
        await sql(
            platform,
            "UPDATE audit_events SET seq = :n WHERE tenant_id = :t AND seq = :s",
            n=row.seq + 1,
            t=log.tenant_id,
            s=row.seq,
        )
    await sql(
        platform,
        "INSERT INTO audit_events (tenant_id, seq, event_id, time, event_type, outcome, "
        "interaction_id, record, prev_hash, hash) VALUES (:t, :s, :e, :time, 'chat.prompt', "
        "'success', NULL, :r, :p, :h)",
        t=log.tenant_id,
        s=forged.seq,
        e=forged.event_id,
        time=forged_event.time.replace(tzinfo=None),
        r=forged.record,
        p=forged.prev_hash,
        h=forged.hash,
    )
    await sql(
        platform,
        "UPDATE audit_chain_heads SET seq = seq + 1 WHERE tenant_id = :t",
        t=log.tenant_id,
    )
    return Expected(forged.seq, forged.event_id, "inserted")


async def reorder(platform: Platform, log: Audited) -> Expected:
    first, second = log.rows[4], log.rows[5]
    for old, new in ((first.seq, -1), (second.seq, first.seq), (-1, second.seq)):
        await sql(
            platform,
            "UPDATE audit_events SET seq = :n WHERE tenant_id = :t AND seq = :s",
            n=new,
            t=log.tenant_id,
            s=old,
        )
    return Expected(first.seq, second.event_id, "out of place")


async def truncate(platform: Platform, log: Audited) -> Expected:
    keep = len(log.rows) - 3
    await sql(
        platform,
        "DELETE FROM audit_events WHERE tenant_id = :t AND seq > :s",
        t=log.tenant_id,
        s=keep,
    )
    return Expected(keep + 1, None, "truncated")


Tamper = Callable[[Platform, Audited], Awaitable[Expected]]
TAMPERS: dict[str, Tamper] = {
    "modify": modify,
    "delete": delete,
    "insert": insert,
    "reorder": reorder,
    "truncate": truncate,
}


async def test_intact_log_verifies(platform: Platform) -> None:
    log = await audited(platform)

    result = obsigen(platform, "audit", "verify", "--tenant", log.name)

    assert result.returncode == 0, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"OK tenant {log.name} ({log.tenant_id}): {len(log.rows)} events")
    # Verifying is itself audited, in the same chain.
    rows = await rows_of(platform, log.tenant_id)
    assert rows[-1].event_type == "audit.verify"
    assert json.loads(rows[-1].record)["outcome"] == "success"
    assert obsigen(platform, "audit", "verify", "--tenant", log.name).returncode == 0


@pytest.mark.parametrize("way", list(TAMPERS))
async def test_tampering_is_found_and_the_first_bad_event_named(
    platform: Platform, way: str
) -> None:
    log = await audited(platform)
    expected = await TAMPERS[way](platform, log)

    result = obsigen(platform, "audit", "verify", "--tenant", log.name)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"TAMPERED tenant {log.name} ({log.tenant_id}): ")
    where = f"seq {expected.seq}" + (f" event_id {expected.event_id}" if expected.event_id else "")
    assert f": {where}: " in line, line
    assert expected.words in line
    # The failed verification is recorded, as a critical event.
    record = json.loads((await rows_of(platform, log.tenant_id))[-1].record)
    assert (record["type"], record["outcome"], record["severity"]) == (
        "audit.verify",
        "failure",
        "critical",
    )


async def test_truncation_behind_a_rolled_back_head_is_caught_by_a_checkpoint(
    platform: Platform,
) -> None:
    log = await audited(platform)
    sink = platform.services.audit.sinks[0]
    assert isinstance(sink, DatabaseAuditSink)
    assert await sink.checkpoint_now(log.tenant_id) is not None
    keep = log.rows[-4]
    await sql(
        platform,
        "DELETE FROM audit_events WHERE tenant_id = :t AND seq > :s",
        t=log.tenant_id,
        s=keep.seq,
    )
    await sql(
        platform,
        "UPDATE audit_chain_heads SET seq = :s, hash = :h WHERE tenant_id = :t",
        s=keep.seq,
        h=keep.hash,
        t=log.tenant_id,
    )

    result = obsigen(platform, "audit", "verify", "--tenant", log.name)

    assert result.returncode == 1
    assert f"seq {keep.seq + 1}: missing: a signed checkpoint is at seq" in result.stdout


async def test_forged_checkpoint_is_caught(platform: Platform) -> None:
    log = await audited(platform)
    await sql(
        platform,
        "UPDATE audit_checkpoints SET hash = :h WHERE tenant_id = :t",
        h="ab" * 32,
        t=log.tenant_id,
    )

    result = obsigen(platform, "audit", "verify", "--tenant", log.name)

    assert result.returncode == 1
    assert "checkpoint signature is invalid" in result.stdout


async def test_export_verifies_offline_and_edits_are_found(
    platform: Platform, tmp_path: Path
) -> None:
    log = await audited(platform)
    export = tmp_path / "audit.jsonl"

    exported = obsigen(platform, "audit", "export", "--tenant", log.name, "-o", str(export))

    assert exported.returncode == 0, exported.stderr
    assert f"exported {len(log.rows)} events (seq 1..{len(log.rows)})" in exported.stdout
    verified = obsigen(platform, "audit", "verify", "--file", str(export))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "manifest signed by key" in verified.stdout
    types = [row.event_type for row in await rows_of(platform, log.tenant_id)]
    assert types[-1] == "audit.export"

    lines = export.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["record"]["outcome"] = "failure"
    lines[2] = json.dumps(edited)
    export.write_text("\n".join(lines) + "\n")
    tampered = obsigen(platform, "audit", "verify", "--file", str(export))
    assert tampered.returncode == 1
    assert f"seq 3 event_id {edited['event_id']}: the hash does not match" in tampered.stdout


async def test_secrets_in_prompts_never_reach_the_audit_trail(platform: Platform) -> None:
    api_key = "obs_0123456789abcdef_" + "Zz9-" * 10 + "xyz"
    bearer = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    log = await audited(platform, secret=f"my key is {api_key} and {bearer}")

    stored = "".join(row.record for row in log.rows)
    files = "".join(
        path.read_text() for path in (platform.settings.paths.data_dir / "audit").glob("*.jsonl")
    )
    for where in (stored, files):
        assert api_key not in where
        assert "Zz9-Zz9-" not in where
        assert "c2lnbmF0dXJl" not in where
    assert "obs_0123456789abcdef_[MASKED]" in stored


def test_unknown_tenant_and_missing_export_are_usage_errors(platform: Platform) -> None:
    unknown = obsigen(platform, "audit", "verify", "--tenant", "no-such-tenant")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: unknown tenant")
    missing = obsigen(platform, "audit", "verify", "--file", "/nonexistent/export.jsonl")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    bad_time = obsigen(platform, "audit", "export", "--tenant", "x", "--since", "yesterday")
    assert bad_time.returncode == 2
    assert "not an ISO 8601" in bad_time.stderr
