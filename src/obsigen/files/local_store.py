"""The embedded object store: one file per object under ``<root>/<tenant_id>/<object_id>``.

Directories are 0700 and files 0600. A put writes to a hidden temporary file next to the
target and renames it into place only after the whole stream was written and synced, so a
reader never sees half an object and a failed upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from obsigen.files.stores import (
    CHUNK_SIZE,
    AnyEncryptionHook,
    IdentityEncryption,
    ObjectKey,
    ObjectNotFound,
    PutResult,
    new_digest,
    open_decryptor,
    open_encryptor,
    sealed,
    unsealed,
)

TEMP_PREFIX = ".partial-"


class LocalObjectStore:
    def __init__(self, root: Path, encryption: AnyEncryptionHook | None = None) -> None:
        self.root = root
        self._encryption: AnyEncryptionHook = encryption or IdentityEncryption()

    def _tenant_dir(self, key: ObjectKey) -> Path:
        return self.root / key.tenant_id

    def path_of(self, key: ObjectKey) -> Path:
        return self._tenant_dir(key) / key.object_id

    def _ensure_dirs(self, key: ObjectKey) -> Path:
        for directory in (self.root, self._tenant_dir(key)):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask; the objects must stay owner-only.
            directory.chmod(0o700)
        return self._tenant_dir(key)

    async def put_stream(self, key: ObjectKey, chunks: AsyncIterable[bytes]) -> PutResult:
        directory = await asyncio.to_thread(self._ensure_dirs, key)
        temp = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        fd = await asyncio.to_thread(
            os.open, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
        )
        digest = new_digest()
        try:
            with os.fdopen(fd, "wb") as out:
                async for piece in sealed(
                    chunks, await open_encryptor(self._encryption, key), digest
                ):
                    await asyncio.to_thread(out.write, piece)
                await asyncio.to_thread(_sync, out)
            await asyncio.to_thread(os.replace, temp, self.path_of(key))
        except BaseException:
            # Also on cancellation (client gone): a partial object must never survive.
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        return digest.result()

    async def get_stream(self, key: ObjectKey) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(self.path_of(key).open, "rb")
        except FileNotFoundError:
            raise ObjectNotFound("object not found") from None
        try:
            transform = await open_decryptor(self._encryption, key)
        except BaseException:
            handle.close()
            raise
        return unsealed(_read_chunks(handle), transform)

    async def delete(self, key: ObjectKey) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path_of(key).unlink)

    async def exists(self, key: ObjectKey) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def aclose(self) -> None:
        return None


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


async def _read_chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_SIZE):
            yield chunk
    finally:
        handle.close()
