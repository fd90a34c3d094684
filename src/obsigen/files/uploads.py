"""The upload pipeline: request body -> checks -> object store -> database row.

In order (docs/files.md):

1. the name is sanitised and its extension must name an allowed type (refused before a byte
   of content is read);
2. a ``pending`` row reserves the id, so an upload interrupted by a crash is findable;
3. the content streams into the store under ``<tenant_id>/<file_id>``, counted against the
   tenant's size limit (413 the moment it is exceeded, the partial object removed), hashed
   (SHA-256) and fed to the content inspector on the way; nothing holds the whole file;
4. the inspector decides the type from the content (zip containers get the full OOXML and
   bomb checks); a refusal deletes the object;
5. the row becomes ``ready`` with size, hash and the detected content type.

Any failure after step 2 removes both the object and the row.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.authz.principal import Principal
from obsigen.config import FilesSettings
from obsigen.db.base import new_id
from obsigen.db.files_models import StoredFile
from obsigen.errors import InvalidInput
from obsigen.files.errors import UnsupportedFile, UploadTooLarge
from obsigen.files.names import sanitise_filename
from obsigen.files.ooxml import ZipLimits
from obsigen.files.sniff import ContentInspector, Detected, kind_of_name
from obsigen.files.stores import ObjectKey, ObjectStore, PutResult


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int
    allowed: frozenset[str]
    zip: ZipLimits

    @classmethod
    def for_tenant(cls, settings: FilesSettings, tenant_id: str) -> UploadLimits:
        return cls(
            max_bytes=settings.max_upload_bytes(tenant_id),
            allowed=frozenset(settings.allowed_types),
            zip=ZipLimits(
                max_entries=settings.zip_max_entries,
                max_total_uncompressed=settings.zip_max_uncompressed_mb * 1024 * 1024,
                max_ratio=settings.zip_max_ratio,
            ),
        )


def claimed_kind(filename: str, allowed: Iterable[str]) -> tuple[str, str]:
    """The sanitised name and the type its extension claims; refuses a type not allowed."""
    name = sanitise_filename(filename)
    kind = kind_of_name(name)
    if kind is None or kind not in frozenset(allowed):
        raise UnsupportedFile(f"files named like {name!r} are not accepted")
    return name, kind


async def _limited(
    chunks: AsyncIterable[bytes], max_bytes: int, inspector: ContentInspector
) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > max_bytes:
            raise UploadTooLarge(f"the file exceeds the upload limit of {max_bytes} bytes")
        await inspector.feed(chunk)
        yield chunk


async def store_upload(
    *,
    sessions: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    principal: Principal,
    filename: str,
    chunks: AsyncIterable[bytes],
    limits: UploadLimits,
    scratch_dir: Path,
) -> StoredFile:
    name, claimed = claimed_kind(filename, limits.allowed)
    file_id = new_id()
    key = ObjectKey(principal.tenant_id, file_id)
    row = StoredFile(
        id=file_id,
        tenant_id=principal.tenant_id,
        owner_kind=principal.kind,
        owner_id=principal.id,
        name=name,
        content_type="",
        size=0,
        sha256="",
        object_key=str(key),
        status="pending",
    )
    async with sessions.begin() as session:
        session.add(row)
    inspector = ContentInspector(claimed, limits.allowed, limits.zip, scratch_dir)
    try:
        result = await store.put_stream(key, _limited(chunks, limits.max_bytes, inspector))
        detected = await inspector.finish()
        return await _commit(sessions, file_id, result, detected)
    except BaseException:
        inspector.close()
        await asyncio.shield(_discard(sessions, store, key))
        raise


async def _commit(
    sessions: async_sessionmaker[AsyncSession],
    file_id: str,
    result: PutResult,
    detected: Detected,
) -> StoredFile:
    if result.size == 0:
        raise InvalidInput("the file is empty")
    async with sessions.begin() as session:
        stored = await session.get(StoredFile, file_id)
        if stored is None:  # removed under our feet (tenant deleted): undo the object
            raise InvalidInput("the upload was cancelled")
        stored.size = result.size
        stored.sha256 = result.sha256
        stored.content_type = detected.mime
        stored.status = "ready"
    return stored


async def _discard(
    sessions: async_sessionmaker[AsyncSession], store: ObjectStore, key: ObjectKey
) -> None:
    # Best effort on both: the original error is what the caller must see.
    with contextlib.suppress(Exception):
        await store.delete(key)
    with contextlib.suppress(Exception):
        async with sessions.begin() as session:
            await session.execute(
                delete(StoredFile).where(
                    StoredFile.tenant_id == key.tenant_id, StoredFile.id == key.object_id
                )
            )
