"""Files a sandbox run left in ``/output`` become artifacts, under the upload rules.

The sandbox already refuses links, devices and oversized files (sandbox/artifacts.py). What
it returns was still written by arbitrary code, so it is checked again here exactly as an
upload would be (files/sniff.py): the name is sanitised, its extension must name an allowed
type, the content must prove that type (zip containers get the OOXML and bomb checks), and
executables and active markup are refused whatever they are called. Count and size limits
apply per run. A refused file is reported by name and reason, never stored.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from obsigen.artifacts.store import ArtifactOrigin, ArtifactStore
from obsigen.authz.principal import Principal
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.errors import ObsigenError
from obsigen.files.names import sanitise_filename
from obsigen.files.ooxml import ZipLimits
from obsigen.files.sniff import MIME_TYPES, ContentInspector, kind_of_name
from obsigen.files.stores import CHUNK_SIZE
from obsigen.sandbox.interfaces import Artifact as SandboxFile

# Every type an upload may have; no HTML, SVG or executables among them.
OUTPUT_TYPES = frozenset(MIME_TYPES)


@dataclass(frozen=True, slots=True)
class OutputLimits:
    max_files: int = 16
    max_file_bytes: int = 8 * 1024 * 1024
    max_total_bytes: int = 16 * 1024 * 1024
    allowed: frozenset[str] = OUTPUT_TYPES
    zip: ZipLimits = field(default_factory=ZipLimits)


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file of the run and what became of it: an artifact, or why not."""

    file: SandboxFile
    name: str  # sanitised
    artifact: StoredArtifact | None = None
    refused: str = ""


@dataclass(frozen=True, slots=True)
class SavedOutputs:
    files: tuple[OutputFile, ...]

    @property
    def saved(self) -> tuple[tuple[SandboxFile, StoredArtifact], ...]:
        return tuple((f.file, f.artifact) for f in self.files if f.artifact is not None)

    @property
    def refused(self) -> tuple[str, ...]:
        """ "name: reason" for each file not stored."""
        return tuple(f"{f.name}: {f.refused}" for f in self.files if f.artifact is None)


async def _check(
    file: SandboxFile, name: str, limits: OutputLimits, scratch_dir: Path
) -> tuple[str | None, str]:
    """The media type proven by the content, or None and why not."""
    claimed = kind_of_name(name)
    if claimed is None or claimed not in limits.allowed:
        return None, "type not allowed"
    inspector = ContentInspector(claimed, limits.allowed, limits.zip, scratch_dir)
    try:
        for start in range(0, len(file.data), CHUNK_SIZE):
            await inspector.feed(file.data[start : start + CHUNK_SIZE])
        detected = await inspector.finish()
    except ObsigenError as exc:
        return None, exc.detail
    finally:
        inspector.close()
    return detected.mime, ""


async def save_outputs(
    store: ArtifactStore,
    principal: Principal,
    files: Sequence[SandboxFile],
    *,
    origin: ArtifactOrigin,
    limits: OutputLimits | None = None,
    scratch_dir: Path | None = None,
) -> SavedOutputs:
    limits = limits or OutputLimits()
    scratch = scratch_dir or Path(tempfile.gettempdir()) / "obsigen-outputs"
    results: list[OutputFile] = []
    saved = total = 0
    for file in files:
        name = sanitise_filename(file.name)
        reason = _over_limit(file, saved, total, limits)
        media_type = None
        if not reason:
            media_type, reason = await _check(file, name, limits, scratch)
        if media_type is None:
            results.append(OutputFile(file, name, refused=reason))
            continue
        row = await store.save(
            principal,
            kind="sandbox",
            name=name,
            content_type=media_type,
            data=file.data,
            origin=origin,
        )
        saved += 1
        total += file.size
        results.append(OutputFile(file, name, artifact=row))
    return SavedOutputs(tuple(results))


def _over_limit(file: SandboxFile, saved: int, total: int, limits: OutputLimits) -> str:
    if saved >= limits.max_files:
        return f"more than {limits.max_files} files"
    if file.size == 0:
        return "empty"
    if file.size > limits.max_file_bytes:
        return f"larger than {limits.max_file_bytes} bytes"
    if total + file.size > limits.max_total_bytes:
        return f"files larger than {limits.max_total_bytes} bytes together"
    return ""
