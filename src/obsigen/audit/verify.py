"""Verifying a tenant's chain as stored in the database."""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit.chain import (
    GENESIS_HASH,
    Anchor,
    ChainEnd,
    ChainVerifier,
    Checkpoint,
    Finding,
    VerifyReport,
    signature_valid,
)
from obsigen.audit.db_store import iter_entries, max_stored_seq, read_checkpoints, read_head


async def verify_tenant(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    keys: Mapping[str, Mapping[str, str]],
) -> VerifyReport:
    head = await read_head(sessions, tenant_id)
    if head is None:
        stored = await max_stored_seq(sessions, tenant_id)
        report = VerifyReport(tenant_id)
        if stored is not None:
            report.finding = Finding(0, None, "events are stored but the chain head is missing")
        return report
    anchor = Anchor(head.anchor_seq, head.anchor_hash)
    checkpoints = [c for c, _ in await read_checkpoints(sessions, tenant_id, anchor.seq)]
    if anchor.seq > 0 and not _anchor_signed(anchor, checkpoints, keys):
        report = VerifyReport(tenant_id, last_seq=anchor.seq)
        report.finding = Finding(
            anchor.seq + 1,
            None,
            f"the log starts after seq {anchor.seq}, which is not a signed checkpoint "
            "(older events deleted)",
        )
        return report
    verifier = ChainVerifier(
        tenant_id,
        keys=keys,
        checkpoints=checkpoints,
        anchor=anchor,
        end=ChainEnd(head.seq, head.hash, "chain head"),
    )
    # Only up to the head read above: later rows may be appends committed meanwhile.
    purge_recorded = anchor.seq == 0 and anchor.hash == GENESIS_HASH
    async for entry in iter_entries(sessions, tenant_id, anchor.seq, head.seq):
        verifier.feed(entry)
        if verifier.stopped:
            break
        purge_recorded = purge_recorded or _records_anchor(entry.record, anchor)
    report = verifier.finish()
    if report.finding is None and not purge_recorded:
        report.finding = Finding(
            anchor.seq + 1,
            None,
            f"the log starts after seq {anchor.seq} but no retention.purge event records "
            "that anchor (older events deleted)",
        )
    if report.finding is None:
        # Read after the head, so a legitimate append is always covered by the head we read.
        stored = await max_stored_seq(sessions, tenant_id)
        latest = await read_head(sessions, tenant_id)
        if stored is not None and latest is not None and stored > latest.seq:
            report.finding = Finding(
                latest.seq + 1,
                None,
                f"events after the chain head (seq {latest.seq}) are not part of the chain "
                "(inserted)",
            )
    return report


def _anchor_signed(
    anchor: Anchor, checkpoints: list[Checkpoint], keys: Mapping[str, Mapping[str, str]]
) -> bool:
    # A purge keeps the checkpoint it cut at: the anchor hash is only as good as its signature.
    for checkpoint in checkpoints:
        if checkpoint.seq == anchor.seq:
            return (
                checkpoint.hash == anchor.hash
                and checkpoint.key_id in keys
                and signature_valid(
                    checkpoint.payload(), checkpoint.signature, keys[checkpoint.key_id]
                )
            )
    return False


def _records_anchor(record: str, anchor: Anchor) -> bool:
    if '"retention.purge"' not in record:
        return False
    data = json.loads(record).get("data", {})
    return bool(data.get("anchor_seq") == anchor.seq and data.get("anchor_hash") == anchor.hash)
