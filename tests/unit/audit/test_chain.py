"""The hash chain and its verifier: every kind of tampering is found, the first bad event named."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from obsigen.audit.chain import (
    GENESIS_HASH,
    Anchor,
    ChainEnd,
    ChainEntry,
    ChainVerifier,
    Checkpoint,
    VerifyReport,
    link_hash,
    make_entry,
    sign_checkpoint,
)
from obsigen.audit.events import AuditEvent
from obsigen.audit.signing import SoftwareEd25519Signer

TENANT = "t1"
SIGNER = SoftwareEd25519Signer(bytes(range(32)))
KEYS = {SIGNER.key_id: SIGNER.jwk}
WHEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def event(n: int, tenant: str = TENANT) -> dict[str, Any]:
    return AuditEvent(
        type="chat.prompt",
        tenant_id=tenant,
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        data={"n": n, "score": 0.5},
    ).to_json()


def build(count: int, anchor: Anchor | None = None) -> list[ChainEntry]:
    anchor = anchor or Anchor()
    entries, prev = [], anchor.hash
    for seq in range(anchor.seq + 1, anchor.seq + count + 1):
        entry = make_entry(event(seq), seq, prev)
        entries.append(entry)
        prev = entry.hash
    return entries


async def checkpoint(entry: ChainEntry) -> Checkpoint:
    return await sign_checkpoint(SIGNER, TENANT, entry.seq, entry.hash, WHEN)


def verify(
    entries: list[ChainEntry],
    *,
    checkpoints: list[Checkpoint] | None = None,
    end: ChainEnd | None = None,
    anchor: Anchor | None = None,
    keys: dict[str, dict[str, str]] | None = None,
) -> VerifyReport:
    verifier = ChainVerifier(
        TENANT,
        keys=KEYS if keys is None else keys,
        checkpoints=checkpoints or [],
        anchor=anchor,
        end=end,
    )
    for entry in entries:
        verifier.feed(entry)
    return verifier.finish()


def head_of(entries: list[ChainEntry]) -> ChainEnd:
    return ChainEnd(entries[-1].seq, entries[-1].hash, "chain head")


def renumber(entry: ChainEntry, seq: int) -> ChainEntry:
    return dataclasses.replace(entry, seq=seq)


def test_the_hash_is_sha256_of_prev_hash_and_the_canonical_record() -> None:
    record = event(1)
    entry = make_entry(record, 1, GENESIS_HASH)
    # The record is ASCII with no floats but 0.5: sorted compact JSON is its RFC 8785 form.
    expected_record = json.dumps({**record, "seq": 1}, sort_keys=True, separators=(",", ":"))
    assert entry.record == expected_record
    assert entry.hash == hashlib.sha256(bytes(32) + expected_record.encode()).hexdigest()
    assert link_hash(GENESIS_HASH, entry.record) == entry.hash


async def test_an_intact_chain_verifies() -> None:
    entries = build(10)
    report = verify(entries, checkpoints=[await checkpoint(entries[4])], end=head_of(entries))
    assert report.intact
    assert (report.events, report.first_seq, report.last_seq) == (10, 1, 10)
    assert report.checkpoints == 1
    assert report.key_ids == {SIGNER.key_id}
    assert report.summary().startswith("OK tenant t1: 10 events (seq 1..10)")


def test_an_empty_chain_verifies() -> None:
    report = verify([], end=ChainEnd(0, GENESIS_HASH, "chain head"))
    assert report.intact
    assert "no events" in report.summary()


def test_modified_record() -> None:
    entries = build(6)
    record = json.loads(entries[2].record)
    record["data"]["n"] = 999
    modified = json.dumps(record, sort_keys=True, separators=(",", ":"))
    entries[2] = dataclasses.replace(entries[2], record=modified)
    finding = verify(entries, end=head_of(entries)).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (3, entries[2].event_id)
    assert "modified" in finding.problem


def test_record_that_is_not_canonical() -> None:
    entries = build(3)
    entries[1] = dataclasses.replace(entries[1], record=entries[1].record.replace(":", ": ", 1))
    finding = verify(entries).finding
    assert finding is not None
    assert finding.seq == 2
    assert "not canonical" in finding.problem


def test_modified_and_rehashed_is_caught_by_the_next_link() -> None:
    entries = build(6)
    record = json.loads(entries[2].record)
    record.pop("seq")
    record["outcome"] = "failure"
    entries[2] = make_entry(record, 3, entries[1].hash)
    finding = verify(entries, end=head_of(entries)).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (4, entries[3].event_id)
    assert "does not link to seq 3" in finding.problem


async def test_rewritten_history_is_caught_by_a_signed_checkpoint() -> None:
    original = build(10)
    signed = [await checkpoint(original[7])]
    # The attacker rewrites event 3 and re-hashes everything after it, head included.
    rewritten = original[:2]
    prev = rewritten[-1].hash
    for entry in original[2:]:
        record = json.loads(entry.record)
        record.pop("seq")
        if entry.seq == 3:
            record["outcome"] = "failure"
        rewritten.append(make_entry(record, entry.seq, prev))
        prev = rewritten[-1].hash
    finding = verify(rewritten, checkpoints=signed, end=head_of(rewritten)).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (8, original[7].event_id)
    assert "signed checkpoint" in finding.problem


def test_deleted_event() -> None:
    entries = build(6)
    del entries[3]
    finding = verify(entries, end=ChainEnd(6, build(6)[5].hash, "chain head")).finding
    assert finding is not None
    assert finding.seq == 4
    assert "missing" in finding.problem
    assert f"next stored event is seq 5 event_id {entries[3].event_id}" in finding.problem


def test_several_deleted_events_are_one_gap() -> None:
    entries = build(8)
    del entries[2:5]
    finding = verify(entries).finding
    assert finding is not None
    assert finding.seq == 3
    assert "seq 3..5 not found" in finding.problem


def test_inserted_event_with_a_valid_hash() -> None:
    entries = build(6)
    forged = make_entry(event(100), 3, entries[1].hash)
    tampered = [*entries[:2], forged, *(renumber(e, e.seq + 1) for e in entries[2:])]
    finding = verify(tampered, end=head_of(tampered)).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (3, forged.event_id)
    assert "inserted" in finding.problem


def test_inserted_event_with_a_made_up_hash() -> None:
    entries = build(6)
    forged = dataclasses.replace(make_entry(event(100), 3, "ab" * 32), prev_hash="ab" * 32)
    tampered = [*entries[:2], forged, *(renumber(e, e.seq + 1) for e in entries[2:])]
    finding = verify(tampered).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (3, forged.event_id)


def test_event_appended_past_the_head() -> None:
    entries = build(6)
    end = head_of(entries[:5])
    finding = verify(entries, end=end).finding
    assert finding is not None
    assert finding.seq == 6
    assert "not part of the chain" in finding.problem


def test_reordered_events() -> None:
    entries = build(6)
    swapped = [*entries[:2], renumber(entries[3], 3), renumber(entries[2], 4), *entries[4:]]
    finding = verify(swapped, end=head_of(entries)).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (3, entries[3].event_id)
    assert "out of place" in finding.problem


def test_reordered_records_under_the_same_seq_numbers() -> None:
    entries = build(6)
    swapped = [*entries[:2], entries[3], entries[2], *entries[4:]]
    finding = verify(swapped).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (3, None)
    assert "missing" in finding.problem


def test_truncated_tail_against_the_head() -> None:
    entries = build(8)
    finding = verify(entries[:5], end=head_of(entries)).finding
    assert finding is not None
    assert finding.seq == 6
    assert "truncated" in finding.problem
    assert "chain head is at seq 8" in finding.problem


async def test_truncated_tail_against_a_checkpoint_when_the_head_was_rolled_back() -> None:
    entries = build(8)
    finding = verify(
        entries[:5], checkpoints=[await checkpoint(entries[6])], end=head_of(entries[:5])
    ).finding
    assert finding is not None
    assert finding.seq == 6
    assert "signed checkpoint is at seq 7" in finding.problem


def test_head_that_does_not_match_the_last_event() -> None:
    entries = build(4)
    finding = verify(entries, end=ChainEnd(4, "cd" * 32, "chain head")).finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (4, entries[3].event_id)


async def test_forged_checkpoint_signature() -> None:
    entries = build(5)
    good = await checkpoint(entries[2])
    forged = dataclasses.replace(good, hash="ef" * 32)
    finding = verify(entries, checkpoints=[forged]).finding
    assert finding is not None
    assert finding.seq == 3
    assert "signature is invalid" in finding.problem


async def test_checkpoint_by_an_untrusted_key() -> None:
    entries = build(5)
    stranger = SoftwareEd25519Signer(bytes(32))
    foreign = await sign_checkpoint(stranger, TENANT, 3, entries[2].hash, WHEN)
    finding = verify(entries, checkpoints=[foreign]).finding
    assert finding is not None
    assert "untrusted key" in finding.problem


def test_event_of_another_tenant() -> None:
    entries = build(3)
    stranger = make_entry(event(2, tenant="t2"), 2, entries[0].hash)
    finding = verify([entries[0], stranger]).finding
    assert finding is not None
    assert "tenant t2" in finding.problem


async def test_verification_from_an_anchor() -> None:
    full = build(10)
    anchor = Anchor(4, full[3].hash)
    signed = [await checkpoint(full[1])]
    report = verify(full[4:], anchor=anchor, checkpoints=signed, end=head_of(full))
    assert report.intact
    assert (report.first_seq, report.last_seq, report.events) == (5, 10, 6)
    # A wrong anchor hash breaks the first link.
    finding = verify(full[4:], anchor=Anchor(4, "00" * 32)).finding
    assert finding is not None
    assert finding.seq == 5


async def test_the_first_bad_event_wins_over_later_ones() -> None:
    entries = build(10)
    signed = [dataclasses.replace(await checkpoint(entries[8]), signature="AAAA")]
    del entries[3]
    finding = verify(entries, checkpoints=signed).finding
    assert finding is not None
    assert finding.seq == 4


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"seq": 1'])
def test_records_that_are_not_objects(text: str) -> None:
    entries = build(2)
    entries[1] = dataclasses.replace(entries[1], record=text)
    finding = verify(entries).finding
    assert finding is not None
    assert finding.seq == 2


async def test_checkpoint_json_round_trip() -> None:
    signed = await checkpoint(build(1)[0])
    assert Checkpoint.from_json(json.loads(json.dumps(signed.as_json()))) == signed
    assert signed.signed_at == "2026-11-26T12:00:00.000000+00:00"
