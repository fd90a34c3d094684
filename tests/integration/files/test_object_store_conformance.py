"""One conformance suite for every object store: the local folder and S3 (moto on loopback)."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tests.fakes.audit_receivers import S3_REGION, MotoS3Receiver

from obsigen.config import Settings
from obsigen.files.factory import make_object_store
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.s3_store import MIN_PART_SIZE, S3ObjectStore, S3StoreConfig
from obsigen.files.stores import (
    ChunkTransform,
    EncryptionHook,
    ObjectKey,
    ObjectNotFound,
    ObjectStore,
)

TENANT = "tenant0a"


class AesCtrHook:
    """A stand-in for the tenant-key hook: AES-CTR with a key per test, nonce per object."""

    def __init__(self) -> None:
        self.key = os.urandom(32)

    def _cipher(self, key: ObjectKey) -> Cipher[modes.CTR]:
        nonce = uuid.uuid5(uuid.NAMESPACE_URL, str(key)).bytes
        return Cipher(algorithms.AES(self.key), modes.CTR(nonce))

    def encryptor(self, key: ObjectKey) -> ChunkTransform:
        return self._cipher(key).encryptor()

    def decryptor(self, key: ObjectKey) -> ChunkTransform:
        return self._cipher(key).decryptor()


class Backend:
    def __init__(self, kind: str, tmp_path: Path, moto: MotoS3Receiver | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.moto = moto
        self.prefix = f"run-{uuid.uuid4().hex[:8]}/"

    def make(self, encryption: EncryptionHook | None = None) -> ObjectStore:
        if self.kind == "local":
            return LocalObjectStore(self.tmp_path / "objects", encryption)
        assert self.moto is not None
        config = S3StoreConfig(
            bucket=self.moto.bucket,
            prefix=self.prefix,
            region=S3_REGION,
            endpoint_url=self.moto.endpoint_url,
            part_size=MIN_PART_SIZE,
        )
        return S3ObjectStore(config, encryption)

    def raw(self, key: ObjectKey) -> bytes:
        """The bytes at rest, bypassing the store."""
        if self.kind == "local":
            return (self.tmp_path / "objects" / key.tenant_id / key.object_id).read_bytes()
        assert self.moto is not None
        answer = self.moto.client().get_object(Bucket=self.moto.bucket, Key=f"{self.prefix}{key}")
        return bytes(answer["Body"].read())

    def leftovers(self) -> list[str]:
        """Anything a failed put could have left: partial files, open multipart uploads."""
        if self.kind == "local":
            root = self.tmp_path / "objects"
            return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []
        assert self.moto is not None
        client = self.moto.client()
        uploads = client.list_multipart_uploads(Bucket=self.moto.bucket, Prefix=self.prefix)
        listing = client.list_objects_v2(Bucket=self.moto.bucket, Prefix=self.prefix)
        return [u["Key"] for u in uploads.get("Uploads", [])] + [
            o["Key"] for o in listing.get("Contents", [])
        ]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    return Backend(request.param, tmp_path, moto)


async def chunks_of(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: ObjectStore, key: ObjectKey) -> bytes:
    return b"".join([chunk async for chunk in await store.get_stream(key)])


def new_key() -> ObjectKey:
    return ObjectKey(TENANT, uuid.uuid4().hex)


@pytest.mark.parametrize("size", [1, 300_000, 2 * MIN_PART_SIZE + 12345])
async def test_round_trip_with_size_and_sha256(backend: Backend, size: int) -> None:
    store = backend.make()
    data = os.urandom(size)
    key = new_key()
    result = await store.put_stream(key, chunks_of(data, 1 << 20))
    assert (result.size, result.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert await store.exists(key)
    assert await read_all(store, key) == data
    assert backend.raw(key) == data  # identity hook: plaintext at rest
    await store.aclose()


async def test_put_replaces_an_existing_object(backend: Backend) -> None:
    store = backend.make()
    key = new_key()
    await store.put_stream(key, chunks_of(b"first"))
    await store.put_stream(key, chunks_of(b"second"))
    assert await read_all(store, key) == b"second"
    await store.aclose()


@pytest.mark.parametrize("size", [1000, MIN_PART_SIZE + 1000])
async def test_a_failing_stream_leaves_nothing_behind(backend: Backend, size: int) -> None:
    store = backend.make()
    key = new_key()

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(os.urandom(size), 500_000):
            yield chunk
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        await store.put_stream(key, broken())
    assert not await store.exists(key)
    assert backend.leftovers() == []
    with pytest.raises(ObjectNotFound):
        await store.get_stream(key)
    await store.aclose()


async def test_delete_really_deletes(backend: Backend) -> None:
    store = backend.make()
    key, other = new_key(), new_key()
    await store.put_stream(key, chunks_of(b"secret"))
    await store.put_stream(other, chunks_of(b"kept"))
    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(ObjectNotFound):
        await store.get_stream(key)
    if backend.kind == "local":
        assert not (backend.tmp_path / "objects" / key.tenant_id / key.object_id).exists()
    else:
        assert backend.moto is not None
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError) as err:
            backend.moto.client().head_object(
                Bucket=backend.moto.bucket, Key=f"{backend.prefix}{key}"
            )
        assert err.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    await store.delete(key)  # again: no error
    assert await read_all(store, other) == b"kept"
    await store.aclose()


async def test_keys_are_per_tenant(backend: Backend) -> None:
    store = backend.make()
    mine, theirs = ObjectKey("tenanta", "same"), ObjectKey("tenantb", "same")
    await store.put_stream(mine, chunks_of(b"a"))
    await store.put_stream(theirs, chunks_of(b"b"))
    assert await read_all(store, mine) == b"a"
    assert backend.raw(theirs) == b"b"
    await store.aclose()


async def test_encryption_hook_applies_at_rest(backend: Backend) -> None:
    hook = AesCtrHook()
    store = backend.make(hook)
    data = b"confidential " * 50_000
    key = new_key()
    result = await store.put_stream(key, chunks_of(data, 65_537))
    assert result.size == len(data)  # plaintext size and hash, not the ciphertext's
    at_rest = backend.raw(key)
    assert at_rest != data
    assert b"confidential" not in at_rest
    assert await read_all(store, key) == data
    await store.aclose()


@pytest.mark.parametrize("part", ["", "../x", "a/b", "a b", "x" * 65, "ä"])
def test_keys_cannot_name_a_path(part: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        ObjectKey(part, "ok")
    with pytest.raises(ValueError, match="invalid object key"):
        ObjectKey("ok", part)


async def test_local_store_is_owner_only(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    key = new_key()
    await store.put_stream(key, chunks_of(b"x"))
    path = tmp_path / "objects" / key.tenant_id / key.object_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


async def test_s3_delete_removes_every_version(moto_s3: MotoS3Receiver) -> None:
    client = moto_s3.client()
    bucket = f"versioned-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": S3_REGION})
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    store = S3ObjectStore(
        S3StoreConfig(bucket=bucket, region=S3_REGION, endpoint_url=moto_s3.endpoint_url)
    )
    key = new_key()
    await store.put_stream(key, chunks_of(b"v1"))
    await store.put_stream(key, chunks_of(b"v2"))
    await store.delete(key)
    versions = client.list_object_versions(Bucket=bucket, Prefix=str(key))
    assert versions.get("Versions", []) == []
    assert versions.get("DeleteMarkers", []) == []
    await store.aclose()


def test_factory_builds_the_configured_store(tmp_path: Path) -> None:
    local = make_object_store(Settings(paths={"data_dir": tmp_path}))
    assert isinstance(local, LocalObjectStore)
    assert local.root == tmp_path / "objects"
    s3 = make_object_store(
        Settings(
            paths={"data_dir": tmp_path},
            storage={
                "object_store": "s3://bucket?endpoint_url=http://127.0.0.1:9&region=eu-central-1"
                "&prefix=obs/&part_size_mb=16"
            },
        )
    )
    assert isinstance(s3, S3ObjectStore)
    assert s3.config.bucket == "bucket"
    assert s3.config.prefix == "obs/"
    assert s3.config.part_size == 16 * 1024 * 1024
    with pytest.raises(ValueError, match="unknown options"):
        S3StoreConfig.from_uri("s3://bucket?colour=red")
    with pytest.raises(ValueError, match="object_store"):
        make_object_store(Settings(storage={"object_store": "ftp://x"}))
