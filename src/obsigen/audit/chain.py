"""The per-tenant hash chain and its verification, free of I/O.

Each event is stored as the canonical JSON (RFC 8785) of its record with its ``seq`` inside;
``hash = sha256(prev_hash || record)`` with ``prev_hash`` as 32 raw bytes, starting from 32
zero bytes. A checkpoint signs ``(tenant, seq, hash)``: with the chain it proves every event
up to ``seq``, and it is what an attacker who can write the database cannot forge.

Verification walks the entries in ``seq`` order and stops at the first bad one; it tells a
modified record, a deleted one, an inserted one, reordered rows and a truncated tail apart
where the evidence allows, so whoever reads the report knows where to look.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from obsigen.audit.canonical import NotCanonicalisable, canonical_bytes, canonical_text
from obsigen.audit.jwk import b64url, b64url_decode, verify_with_jwk
from obsigen.audit.signing import Signer

GENESIS_HASH = "0" * 64
CHECKPOINT_TYPE = "obsigen.audit.checkpoint"


def link_hash(prev_hash: str, record: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + record.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One link as stored or exported: the record and the hashes around it."""

    seq: int
    event_id: str
    prev_hash: str
    hash: str
    record: str  # canonical JSON, with "seq" inside

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "record": json.loads(self.record),
        }


def make_entry(event_json: Mapping[str, Any], seq: int, prev_hash: str) -> ChainEntry:
    record = canonical_text({**event_json, "seq": seq})
    return ChainEntry(
        seq=seq,
        event_id=str(event_json["event_id"]),
        prev_hash=prev_hash,
        hash=link_hash(prev_hash, record),
        record=record,
    )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    tenant_id: str
    seq: int
    hash: str
    signed_at: str  # ISO 8601 UTC, exactly as signed
    key_id: str
    algorithm: str
    signature: str  # base64url

    def payload(self) -> bytes:
        return checkpoint_payload(
            self.tenant_id, self.seq, self.hash, self.signed_at, self.key_id, self.algorithm
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "hash": self.hash,
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "alg": self.algorithm,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(
            tenant_id=str(data["tenant_id"]),
            seq=int(data["seq"]),
            hash=str(data["hash"]),
            signed_at=str(data["signed_at"]),
            key_id=str(data["key_id"]),
            algorithm=str(data["alg"]),
            signature=str(data["signature"]),
        )


def checkpoint_payload(
    tenant_id: str, seq: int, hash_: str, signed_at: str, key_id: str, algorithm: str
) -> bytes:
    return canonical_bytes(
        {
            "type": CHECKPOINT_TYPE,
            "tenant_id": tenant_id,
            "seq": seq,
            "hash": hash_,
            "signed_at": signed_at,
            "key_id": key_id,
            "alg": algorithm,
        }
    )


async def sign_checkpoint(
    signer: Signer, tenant_id: str, seq: int, hash_: str, signed_at: datetime
) -> Checkpoint:
    when = signed_at.isoformat(timespec="microseconds")
    payload = checkpoint_payload(tenant_id, seq, hash_, when, signer.key_id, signer.algorithm)
    return Checkpoint(
        tenant_id=tenant_id,
        seq=seq,
        hash=hash_,
        signed_at=when,
        key_id=signer.key_id,
        algorithm=signer.algorithm,
        signature=b64url(await signer.sign(payload)),
    )


def signature_valid(payload: bytes, signature: str, jwk: Mapping[str, str]) -> bool:
    try:
        raw = b64url_decode(signature)
    except ValueError:
        return False
    return verify_with_jwk(dict(jwk), payload, raw)


@dataclass(frozen=True, slots=True)
class Anchor:
    """The link just before the first entry checked: genesis, or where a purge left off."""

    seq: int = 0
    hash: str = GENESIS_HASH


@dataclass(frozen=True, slots=True)
class ChainEnd:
    """Where the chain is known to end (the head row, or a signed export manifest)."""

    seq: int
    hash: str
    source: str  # "chain head", "export manifest"


@dataclass(frozen=True, slots=True)
class Finding:
    seq: int
    event_id: str | None
    problem: str

    def describe(self) -> str:
        where = f"seq {self.seq}" + (f" event_id {self.event_id}" if self.event_id else "")
        return f"{where}: {self.problem}"


@dataclass(slots=True)
class VerifyReport:
    tenant_id: str
    events: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    checkpoints: int = 0
    key_ids: set[str] = field(default_factory=set)
    finding: Finding | None = None

    @property
    def intact(self) -> bool:
        return self.finding is None

    def summary(self) -> str:
        if self.finding is not None:
            return f"TAMPERED tenant {self.tenant_id}: {self.finding.describe()}"
        span = f"seq {self.first_seq}..{self.last_seq}" if self.events else "no events"
        keys = ", ".join(sorted(self.key_ids)) or "none"
        return (
            f"OK tenant {self.tenant_id}: {self.events} events ({span}), "
            f"head {self.last_hash[:16]}, {self.checkpoints} signed checkpoints "
            f"verified (keys: {keys})"
        )


class ChainVerifier:
    """Feed entries in ``seq`` order, then ``finish()``; the report names the first bad event."""

    def __init__(
        self,
        tenant_id: str,
        *,
        keys: Mapping[str, Mapping[str, str]],
        checkpoints: Iterable[Checkpoint] = (),
        anchor: Anchor | None = None,
        end: ChainEnd | None = None,
    ) -> None:
        self._tenant_id = tenant_id
        self._anchor = anchor or Anchor()
        self._end = end
        self._report = VerifyReport(tenant_id, last_seq=self._anchor.seq)
        self._report.last_hash = self._anchor.hash
        self._findings: list[Finding] = []
        self._previous: ChainEntry | None = None
        self._stopped = False
        self._checkpoints = self._check_signatures(checkpoints, keys)

    @property
    def stopped(self) -> bool:
        """True once a bad event is found: later entries cannot change the verdict."""
        return self._stopped

    def _check_signatures(
        self, checkpoints: Iterable[Checkpoint], keys: Mapping[str, Mapping[str, str]]
    ) -> dict[int, Checkpoint]:
        valid: dict[int, Checkpoint] = {}
        for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
            if checkpoint.seq <= self._anchor.seq:
                continue  # purged with the events it covered
            problem = None
            if checkpoint.tenant_id != self._tenant_id:
                problem = f"checkpoint belongs to tenant {checkpoint.tenant_id}"
            elif checkpoint.key_id not in keys:
                problem = f"checkpoint signed by an untrusted key {checkpoint.key_id}"
            elif not signature_valid(
                checkpoint.payload(), checkpoint.signature, keys[checkpoint.key_id]
            ):
                problem = "checkpoint signature is invalid (forged or modified checkpoint)"
            if problem is not None:
                self._findings.append(Finding(checkpoint.seq, None, problem))
                continue
            valid[checkpoint.seq] = checkpoint
            self._report.key_ids.add(checkpoint.key_id)
        return valid

    def feed(self, entry: ChainEntry) -> None:
        if self._stopped:
            return
        finding = self._check(entry)
        if finding is not None:
            self._findings.append(finding)
            self._stopped = True
            return
        report = self._report
        report.events += 1
        if report.first_seq is None:
            report.first_seq = entry.seq
        report.last_seq, report.last_hash = entry.seq, entry.hash
        if entry.seq in self._checkpoints:
            report.checkpoints += 1
        self._previous = entry

    def reject(self, problem: str) -> None:
        """Stop at the next expected seq for a reason found outside the chain (a bad line)."""
        if not self._stopped:
            self._findings.append(Finding(self._report.last_seq + 1, None, problem))
            self._stopped = True

    def _check(self, entry: ChainEntry) -> Finding | None:
        expected = self._report.last_seq + 1
        if entry.seq < expected:
            return Finding(entry.seq, entry.event_id, f"out of order: expected seq {expected}")
        if entry.seq > expected:
            gap = f"seq {expected}" + (f"..{entry.seq - 1}" if entry.seq - 1 > expected else "")
            return Finding(
                expected,
                None,
                f"missing: {gap} not found (deleted); the next stored event is "
                f"seq {entry.seq} event_id {entry.event_id}",
            )
        try:
            record = json.loads(entry.record)
            canonical = canonical_text(record)
        except (ValueError, NotCanonicalisable):
            return Finding(entry.seq, entry.event_id, "the record is not valid JSON (modified)")
        if not isinstance(record, dict):
            return Finding(entry.seq, entry.event_id, "the record is not an object (modified)")
        if canonical != entry.record:
            return Finding(entry.seq, entry.event_id, "the record is not canonical (modified)")
        if record.get("seq") != entry.seq:
            return self._out_of_place(entry, record.get("seq"))
        if record.get("event_id") != entry.event_id:
            return Finding(
                entry.seq, entry.event_id, "the stored event_id differs from the record (modified)"
            )
        if record.get("tenant_id") != self._tenant_id:
            return Finding(
                entry.seq, entry.event_id, f"the record belongs to tenant {record.get('tenant_id')}"
            )
        if entry.prev_hash != self._report.last_hash:
            return self._broken_link(entry)
        if link_hash(entry.prev_hash, entry.record) != entry.hash:
            return Finding(
                entry.seq, entry.event_id, "the hash does not match the record (modified)"
            )
        checkpoint = self._checkpoints.get(entry.seq)
        if checkpoint is not None and checkpoint.hash != entry.hash:
            return Finding(
                entry.seq,
                entry.event_id,
                "differs from the signed checkpoint at this seq (history rewritten)",
            )
        return None

    def _out_of_place(self, entry: ChainEntry, recorded: Any) -> Finding:
        previous = self._previous
        if (
            previous is not None
            and recorded == previous.seq
            and entry.prev_hash == previous.prev_hash
        ):
            # Two links claim the same predecessor: the earlier one was slipped in.
            return Finding(
                previous.seq,
                previous.event_id,
                f"inserted: not part of the chain (seq {entry.seq} event_id {entry.event_id} "
                f"was recorded as seq {recorded} and links to the same predecessor)",
            )
        return Finding(
            entry.seq,
            entry.event_id,
            f"out of place: the record says seq {recorded} (rows reordered or renumbered)",
        )

    def _broken_link(self, entry: ChainEntry) -> Finding:
        previous = self._previous
        if previous is not None and entry.prev_hash == previous.prev_hash:
            return Finding(
                previous.seq,
                previous.event_id,
                f"inserted: not part of the chain (seq {entry.seq} links to its predecessor)",
            )
        return Finding(
            entry.seq,
            entry.event_id,
            f"does not link to seq {entry.seq - 1}: prev_hash differs "
            "(the event before it was modified, replaced or reordered)",
        )

    def finish(self) -> VerifyReport:
        report = self._report
        if not self._stopped:
            self._check_end()
        if self._findings:
            report.finding = min(self._findings, key=lambda f: f.seq)
        return report

    def _check_end(self) -> None:
        report = self._report
        claims: list[tuple[int, str]] = [(seq, "a signed checkpoint") for seq in self._checkpoints]
        if self._end is not None:
            claims.append((self._end.seq, f"the {self._end.source}"))
        beyond = [(seq, source) for seq, source in claims if seq > report.last_seq]
        if beyond:
            seq, source = max(beyond)
            self._findings.append(
                Finding(
                    report.last_seq + 1,
                    None,
                    f"missing: {source} is at seq {seq} but the log ends at seq "
                    f"{report.last_seq} (truncated)",
                )
            )
            return
        end = self._end
        if end is not None and end.seq == report.last_seq and end.hash != report.last_hash:
            event_id = self._previous.event_id if self._previous else None
            self._findings.append(
                Finding(
                    end.seq, event_id, f"the last event does not match the {end.source} (modified)"
                )
            )
        if end is not None and end.seq < report.last_seq:
            self._findings.append(
                Finding(
                    end.seq + 1,
                    None,
                    f"events after the {end.source} (seq {end.seq}) are not part of the chain "
                    "(appended by something other than Obsigen)",
                )
            )
