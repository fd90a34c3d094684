"""Exporting a period of a tenant's chain, and checking an export offline.

An export is a JSON Lines file and a signed manifest beside it (``<file>.manifest.json``).
Each line carries the chain link (seq, prev_hash, hash) and the record the hash covers, so
an auditor re-computes every hash with any RFC 8785 implementation and SHA-256. The manifest
pins the period's first link (its anchor), its last seq and hash, the checkpoints inside the
period with their signatures, and the public keys; it is itself signed, so dropping events
from either end or editing the manifest shows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit.canonical import NotCanonicalisable, canonical_bytes, canonical_text
from obsigen.audit.chain import (
    Anchor,
    ChainEnd,
    ChainEntry,
    ChainVerifier,
    Checkpoint,
    Finding,
    VerifyReport,
    signature_valid,
)
from obsigen.audit.db_store import iter_entries, read_checkpoints, read_head, seq_range
from obsigen.audit.jwk import b64url, jwk_thumbprint
from obsigen.audit.ocsf import to_ocsf
from obsigen.audit.signing import Signer
from obsigen.db.base import utcnow

ExportFormat = Literal["jsonl", "ocsf"]
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_TYPE = "obsigen.audit.export"


class ExportError(Exception):
    """The export cannot be written or read (not: it was tampered with; that is a finding)."""


def manifest_path(export: Path) -> Path:
    return export.with_name(export.name + MANIFEST_SUFFIX)


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    manifest: Path
    count: int
    first_seq: int | None
    last_seq: int | None
    key_id: str
    sha256: str


def export_line(entry: ChainEntry, fmt: ExportFormat) -> dict[str, Any]:
    link = entry.as_json()
    if fmt == "jsonl":
        return link
    return {**to_ocsf(link["record"]), "obsigen": link}


async def export_tenant(
    sessions: async_sessionmaker[AsyncSession],
    signer: Signer,
    *,
    tenant_id: str,
    tenant_name: str,
    since: datetime | None,
    until: datetime | None,
    fmt: ExportFormat,
    path: Path,
) -> ExportResult:
    head = await read_head(sessions, tenant_id)
    span = await seq_range(sessions, tenant_id, since, until)
    first_seq = last_seq = None
    if head is not None and span is not None:
        # Rows beyond the head or before the anchor are not part of the chain.
        first_seq, last_seq = max(span[0], head.anchor_seq + 1), min(span[1], head.seq)
        if first_seq > last_seq:
            first_seq = last_seq = None
    digest = hashlib.sha256()
    count, anchor, last_hash = 0, None, None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        if first_seq is not None:
            async for entry in iter_entries(sessions, tenant_id, first_seq - 1, last_seq):
                if anchor is None:
                    anchor = {"seq": entry.seq - 1, "hash": entry.prev_hash}
                # ASCII-escaped: U+2028 in user text must not split a line for line readers.
                line = (json.dumps(export_line(entry, fmt)) + "\n").encode()
                out.write(line)
                digest.update(line)
                count, last_hash = count + 1, entry.hash
    checkpoints: list[tuple[Checkpoint, dict[str, str]]] = []
    if first_seq is not None and last_seq is not None:
        checkpoints = await read_checkpoints(sessions, tenant_id, first_seq, last_seq)
    keys = {signer.key_id: await signer.public_jwk()}
    for checkpoint, jwk in checkpoints:
        keys.setdefault(checkpoint.key_id, jwk)
    manifest: dict[str, Any] = {
        "type": MANIFEST_TYPE,
        "version": 1,
        "event_format": fmt,
        "tenant_id": tenant_id,
        "tenant_name": tenant_name,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "exported_at": utcnow().isoformat(),
        "events": {
            "count": count,
            "first_seq": first_seq if count else None,
            "last_seq": last_seq if count else None,
            "anchor": anchor,
            "last_hash": last_hash,
        },
        "chain_head": {"seq": head.seq, "hash": head.hash} if head else None,
        "checkpoints": [checkpoint.as_json() for checkpoint, _ in checkpoints],
        "public_keys": list(keys.values()),
        "file": {"name": path.name, "sha256": digest.hexdigest()},
    }
    manifest["signature"] = {
        "key_id": signer.key_id,
        "alg": signer.algorithm,
        "value": b64url(await signer.sign(canonical_bytes(manifest))),
    }
    target = manifest_path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=2, ensure_ascii=False)
        out.write("\n")
    return ExportResult(
        path=path,
        manifest=target,
        count=count,
        first_seq=first_seq if count else None,
        last_seq=last_seq if count else None,
        key_id=signer.key_id,
        sha256=digest.hexdigest(),
    )


# --- offline verification -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportCheck:
    report: VerifyReport
    manifest_key_id: str | None


def verify_export(path: Path, trusted: set[str] | None = None) -> ExportCheck:
    """Check an export and its manifest with nothing but the two files.

    ``trusted`` pins the key thumbprints an auditor accepts (published out of band); without
    it, the keys in the manifest are used and the summary names the signing key's thumbprint
    for the auditor to compare.
    """
    manifest = _load_manifest(path)
    try:
        return _verify_against(path, manifest, trusted)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExportError(f"the manifest is malformed: {exc!r}") from exc


def _verify_against(path: Path, manifest: dict[str, Any], trusted: set[str] | None) -> ExportCheck:
    signature = manifest.pop("signature")
    keys, thumbprints = _manifest_keys(manifest["public_keys"], trusted)
    tenant_id = str(manifest["tenant_id"])
    events = manifest["events"]
    checkpoints = [Checkpoint.from_json(c) for c in manifest["checkpoints"]]
    anchor_json = events["anchor"]
    key_id = str(signature["key_id"])
    anchor = Anchor(int(anchor_json["seq"]), str(anchor_json["hash"])) if anchor_json else None
    end = None
    if events.get("last_seq") is not None:
        end = ChainEnd(int(events["last_seq"]), str(events["last_hash"]), "export manifest")
    verifier = ChainVerifier(tenant_id, keys=keys, checkpoints=checkpoints, anchor=anchor, end=end)
    digest = hashlib.sha256()
    for line_number, entry in _entries(path, digest):
        if isinstance(entry, str):
            verifier.reject(f"line {line_number}: {entry} (modified)")
        else:
            verifier.feed(entry)
        if verifier.stopped:
            break
    report = verifier.finish()
    if report.finding is None:
        report.finding = _manifest_finding(manifest, signature, keys, digest.hexdigest(), report)
    return ExportCheck(report, thumbprints.get(key_id, key_id))


def _manifest_keys(
    public_keys: list[dict[str, str]], trusted: set[str] | None
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The manifest's keys by key id, only pinned ones when pins are given; and thumbprints.

    Pins are thumbprints, which a forger cannot choose; a key id (``kid``) can be anything.
    """
    keys: dict[str, dict[str, str]] = {}
    thumbprints: dict[str, str] = {}
    for jwk in public_keys:
        thumbprint = jwk_thumbprint(jwk)
        kid = jwk.get("kid")
        kid = kid if isinstance(kid, str) and kid else thumbprint
        thumbprints[kid] = thumbprint
        if trusted is None or thumbprint in trusted:
            keys[kid] = jwk
    return keys, thumbprints


def _load_manifest(path: Path) -> dict[str, Any]:
    target = manifest_path(path)
    if not path.is_file():
        raise ExportError(f"no such export: {path}")
    if not target.is_file():
        raise ExportError(f"the manifest {target.name} is missing beside the export")
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"the manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("type") != MANIFEST_TYPE:
        raise ExportError("not an Obsigen audit export manifest")
    return manifest


def _entries(path: Path, digest: Any) -> Iterator[tuple[int, ChainEntry | str]]:
    with path.open("rb") as lines:
        for line_number, raw in enumerate(lines, start=1):
            digest.update(raw)
            yield line_number, _parse_line(raw)


def _parse_line(raw: bytes) -> ChainEntry | str:
    try:
        line = json.loads(raw)
        link = line.get("obsigen", line) if isinstance(line, dict) else None
        if not isinstance(link, dict):
            return "not an export line"
        return ChainEntry(
            seq=int(link["seq"]),
            event_id=str(link["event_id"]),
            prev_hash=str(link["prev_hash"]),
            hash=str(link["hash"]),
            record=canonical_text(link["record"]),
        )
    except (ValueError, KeyError, TypeError, NotCanonicalisable):
        return "not a valid export line"


def _manifest_finding(
    manifest: Mapping[str, Any],
    signature: Mapping[str, Any],
    keys: Mapping[str, Mapping[str, str]],
    file_sha256: str,
    report: VerifyReport,
) -> Finding | None:
    after = report.last_seq + 1
    key_id = str(signature.get("key_id"))
    if key_id not in keys:
        return Finding(after, None, f"the manifest is signed by an untrusted key {key_id}")
    if not signature_valid(canonical_bytes(manifest), str(signature.get("value")), keys[key_id]):
        return Finding(after, None, "the manifest signature is invalid (manifest modified)")
    if manifest["events"]["count"] != report.events:
        return Finding(after, None, "the manifest counts a different number of events")
    if manifest["file"]["sha256"] != file_sha256:
        return Finding(after, None, "the file differs from the digest in the manifest")
    return None
