"""Cost of tenant encryption: ``.venv/bin/python -m bench.tenant_keys [--quick]``.

- ``object encrypt|decrypt``: MB/s of the segmented AES-256-GCM stream over an 8 MiB object
  fed in the stores' 256 KiB chunks (no I/O: the cipher alone);
- ``object local store put|get``: the same through the local object store with the tenant hook
  (DEK cached, as in a warm server), plaintext identity store alongside for comparison;
- ``message seal|open``: microseconds to seal and open one 1 KiB message body with a cached DEK.

Writes ``bench/results/tenant_keys.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.report import machine_info, write_suite
from bench.timing import time_async
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.migrate import upgrade_to_head
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import CHUNK_SIZE, ObjectKey
from obsigen.identity.tenants import create_tenant
from obsigen.keys import make_key_provider
from obsigen.tenantkeys import aead
from obsigen.tenantkeys.cipher import TenantCipher
from obsigen.tenantkeys.keyring import TenantKeyring
from obsigen.tenantkeys.objects import TenantObjectEncryption

MIB = 1024 * 1024


def _mb_per_s(size: int, seconds: list[float]) -> dict[str, float]:
    best, median = min(seconds), statistics.median(seconds)
    return {"median_mb_s": round(size / MIB / median, 1), "best_mb_s": round(size / MIB / best, 1)}


async def _timed(op: Callable[[], Awaitable[Any]], rounds: int) -> list[float]:
    await op()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - start)
    return samples


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK_SIZE):
        yield data[start : start + CHUNK_SIZE]


async def _drain(stream: AsyncIterator[bytes]) -> int:
    return sum([len(chunk) async for chunk in stream])


async def run(quick: bool) -> dict[str, Any]:
    rounds = 5 if quick else 20
    size = 8 * MIB
    data = os.urandom(size)
    dek = os.urandom(32)
    binding = b"tenant\x00object"
    results: dict[str, Any] = {}

    async def encrypt() -> bytes:
        enc = aead.SegmentEncryptor(dek, 1, binding)
        parts = [enc.update(data[i : i + CHUNK_SIZE]) for i in range(0, size, CHUNK_SIZE)]
        return b"".join([*parts, enc.finalize()])

    sealed = await encrypt()

    async def decrypt() -> None:
        dec = aead.SegmentDecryptor({1: dek}, binding, allow_plaintext=False)
        for i in range(0, len(sealed), CHUNK_SIZE):
            dec.update(sealed[i : i + CHUNK_SIZE])
        dec.finalize()

    results["object encrypt (cipher only)"] = _mb_per_s(size, await _timed(encrypt, rounds))
    results["object decrypt (cipher only)"] = _mb_per_s(size, await _timed(decrypt, rounds))

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        engine = make_engine(f"sqlite+aiosqlite:///{root / 'bench.db'}")
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as session:
            tenant = (await create_tenant(session, f"bench-{uuid.uuid4().hex[:8]}")).id
        provider = make_key_provider("software", root)
        keyring = TenantKeyring(provider, sessions)
        for label, hook in (
            ("plaintext", None),
            ("tenant-encrypted", TenantObjectEncryption(keyring)),
        ):
            store = LocalObjectStore(root / f"objects-{label}", hook)
            key = ObjectKey(tenant, "bench")

            async def put(store: LocalObjectStore = store, key: ObjectKey = key) -> None:
                await store.put_stream(key, _chunks(data))

            async def get(store: LocalObjectStore = store, key: ObjectKey = key) -> None:
                assert await _drain(await store.get_stream(key)) == size

            results[f"object local store put ({label})"] = _mb_per_s(
                size, await _timed(put, rounds)
            )
            results[f"object local store get ({label})"] = _mb_per_s(
                size, await _timed(get, rounds)
            )

        cipher = TenantCipher(keyring)
        body = "x" * 1024
        names = {"table": "messages", "column": "content", "row_id": "row"}
        envelope = await cipher.encrypt_text(tenant, body, **names)

        async def seal() -> None:
            await cipher.encrypt_text(tenant, body, **names)

        async def open_() -> None:
            await cipher.decrypt_text(tenant, envelope, **names)

        message_rounds = 2000 if quick else 20000
        results["message seal 1 KiB (us)"] = await time_async(seal, message_rounds)
        results["message open 1 KiB (us)"] = await time_async(open_, message_rounds)
        await provider.aclose()
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args.quick))
    path = write_suite("tenant_keys", machine_info(), {"object_bytes": 8 * MIB, "results": results})
    for name, value in results.items():
        print(f"{name:<45} {value}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
