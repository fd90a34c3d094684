"""The file audit sink: one JSONL file per tenant, owner-only, no lost or torn lines."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from obsigen.audit.events import EVENT_CLASSES, AuditEvent, actor_of, digest
from obsigen.audit.file_sink import FileAuditSink
from obsigen.audit.interfaces import AuditSink
from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal

ACTOR = {"kind": "user", "id": "u1"}


def event(tenant_id: str = "t1", type_: str = "chat.prompt", **data: Any) -> AuditEvent:
    return AuditEvent(
        type=type_,
        tenant_id=tenant_id,
        actor=ACTOR,
        outcome="success",
        interaction_id="i1",
        data=data,
    )


def read_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    # JSON Lines separates records by "\n" only (str.splitlines would also split on U+2028).
    return [json.loads(line) for line in text[:-1].split("\n")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_is_an_audit_sink(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit")
    assert isinstance(sink, AuditSink)
    assert sink.name == "file"


def test_directory_is_created_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    FileAuditSink(directory)
    assert directory.is_dir()
    assert mode(directory) == 0o700


async def test_events_are_appended_as_json_lines_per_tenant(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit")
    first, second, other = event("t1", n=1), event("t1", n=2), event("t2", n=3)
    for e in (first, second, other):
        await sink.emit(e)
    await sink.aclose()

    t1 = read_lines(sink.path_for("t1"))
    t2 = read_lines(sink.path_for("t2"))
    assert [line["event_id"] for line in t1] == [first.event_id, second.event_id]
    assert [line["data"] for line in t1] == [{"n": 1}, {"n": 2}]
    assert [line["event_id"] for line in t2] == [other.event_id]
    assert {line["tenant_id"] for line in t1} == {"t1"}
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == ["t1.jsonl", "t2.jsonl"]


async def test_a_new_sink_appends_to_an_existing_file(tmp_path: Path) -> None:
    await FileAuditSink(tmp_path / "audit").emit(event(n=1))
    await FileAuditSink(tmp_path / "audit").emit(event(n=2))
    lines = read_lines(FileAuditSink(tmp_path / "audit").path_for("t1"))
    assert [line["data"]["n"] for line in lines] == [1, 2]


async def test_file_is_owner_only(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit")
    await sink.emit(event())
    assert mode(sink.path_for("t1")) == 0o600


async def test_one_event_is_one_line_whatever_the_data(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit")
    tricky = 'line one\nline two\r\n\u2028 "quoted" {json} Grüße 数据'
    await sink.emit(event(text=tricky))
    [line] = read_lines(sink.path_for("t1"))
    assert line["data"]["text"] == tricky
    assert sink.path_for("t1").read_bytes().count(b"\n") == 1


async def test_concurrent_emits_all_land_as_valid_lines(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit")
    # Large payloads make torn or interleaved writes visible if the sink ever loses its lock.
    events = [event("t1" if i % 2 else "t2", i=i, pad="x" * 8192) for i in range(200)]
    await asyncio.gather(*(sink.emit(e) for e in events))

    t1 = read_lines(sink.path_for("t1"))
    t2 = read_lines(sink.path_for("t2"))
    assert len(t1) + len(t2) == 200
    assert {line["data"]["i"] for line in t1} == set(range(1, 200, 2))
    assert {line["data"]["i"] for line in t2} == set(range(0, 200, 2))
    assert {line["event_id"] for line in t1 + t2} == {e.event_id for e in events}


async def test_ocsf_fields(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit")
    before = datetime.now(UTC)
    await sink.emit(event(type_="tool.call", tool="calculator"))
    await sink.emit(AuditEvent(type="auth.login", tenant_id="t1", actor=ACTOR, outcome="failure"))
    after = datetime.now(UTC)
    tool_call, login = read_lines(sink.path_for("t1"))

    assert tool_call["type"] == "tool.call"
    assert (tool_call["class_uid"], tool_call["category_uid"]) == (6003, 6)
    assert tool_call["activity_name"] == "tool_call"
    assert tool_call["actor"] == ACTOR
    assert tool_call["outcome"] == "success"
    assert tool_call["interaction_id"] == "i1"
    assert tool_call["data"] == {"tool": "calculator"}

    assert login["type"] == "auth.login"
    assert (login["class_uid"], login["category_uid"]) == (3002, 3)  # OCSF Authentication
    assert login["outcome"] == "failure"
    assert login["interaction_id"] is None

    for line in (tool_call, login):
        when = datetime.fromisoformat(line["time"])
        assert when.utcoffset() == timedelta(0)
        assert before <= when <= after
        assert len(line["event_id"]) == 32
        int(line["event_id"], 16)


def test_every_event_type_has_a_consistent_ocsf_class() -> None:
    for type_, (class_uid, category_uid, activity) in EVENT_CLASSES.items():
        # OCSF class ids are category * 1000 + n.
        assert class_uid // 1000 == category_uid, type_
        assert activity
        record = AuditEvent(type=type_, tenant_id="t", actor=ACTOR, outcome="success").to_json()
        assert (record["class_uid"], record["category_uid"]) == (class_uid, category_uid)
        assert record["type"] == type_


def test_event_ids_are_unique() -> None:
    assert len({event().event_id for _ in range(1000)}) == 1000


def test_actor_of_principal() -> None:
    principal = Principal(tenant_id="t1", kind="apikey", id="k1", roles=frozenset({Role.MEMBER}))
    assert actor_of(principal) == {"kind": "apikey", "id": "k1"}


@pytest.mark.parametrize("text", ["", "hello", "Grüße"])
def test_digest(text: str) -> None:
    value = digest(text)
    assert value.startswith("sha256:")
    assert len(value) == len("sha256:") + 64
    assert value == digest(text)
    assert value != digest(text + " ")


async def test_a_full_file_is_rotated_without_splitting_or_losing_lines(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path, max_bytes=4096)
    sent = [event(n=n, text="x" * 200) for n in range(60)]
    for item in sent:
        await sink.emit(item)

    rotated = sink.rotated("t1")
    assert len(rotated) >= 3
    files = [*rotated, sink.path_for("t1")]
    assert all(path.stat().st_size <= 4096 for path in files)
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    received = [line["event_id"] for path in files for line in read_lines(path)]
    assert received == [item.event_id for item in sent]
    # Another tenant's file is untouched by this tenant's rotation.
    await sink.emit(event("t2"))
    assert sink.rotated("t2") == []


def test_a_tiny_rotation_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        FileAuditSink(tmp_path, max_bytes=10)


async def test_a_batch_lands_in_order_per_tenant_with_one_write_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = FileAuditSink(tmp_path)
    writes: list[int] = []
    write = FileAuditSink._write

    def counted(path: Path, lines: list[bytes]) -> None:
        if lines:
            writes.append(len(lines))
        write(path, lines)

    monkeypatch.setattr(FileAuditSink, "_write", staticmethod(counted))
    batch = [event("t1", n=0), event("t2", n=1), event("t1", n=2), event("t1", n=3)]
    await sink.emit_many(batch)

    assert sorted(writes) == [1, 3]
    assert [line["data"]["n"] for line in read_lines(sink.path_for("t1"))] == [0, 2, 3]
    assert [line["data"]["n"] for line in read_lines(sink.path_for("t2"))] == [1]


async def test_a_batch_is_rotated_between_lines_as_single_events_are(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path, max_bytes=4096)
    # Seven of these lines are more than a file may hold: the batch must be split.
    sent = [event(n=n, text="x" * 400) for n in range(60)]
    for start in range(0, 60, 7):
        await sink.emit_many(sent[start : start + 7])

    files = [*sink.rotated("t1"), sink.path_for("t1")]
    assert len(files) >= 4
    assert all(path.stat().st_size <= 4096 for path in files)
    received = [line["event_id"] for path in files for line in read_lines(path)]
    assert received == [item.event_id for item in sent]
