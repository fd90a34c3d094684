"""Objects in S3 (or an S3-compatible store) under ``<prefix><tenant_id>/<object_id>``.

``storage.object_store = "s3://BUCKET?region=..&endpoint_url=..&prefix=..&access_key_id=env:..
&secret_access_key=env:..&part_size_mb=8"``. boto3 is blocking, so every call runs in a worker
thread. A stream larger than one part goes up as a multipart upload, one part in memory at a
time; an upload that fails or is cancelled is aborted, so S3 keeps no orphaned parts. Deleting
also removes every version of the key, so deletion in a versioned bucket really deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from obsigen.files.errors import ObjectStoreUnavailable
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
from obsigen.secretref import resolve_secret

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_THROTTLED = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError"}
_OPTIONS = {
    "region",
    "endpoint_url",
    "prefix",
    "access_key_id",
    "secret_access_key",
    "part_size_mb",
    "timeout_s",
}


@dataclass(frozen=True, slots=True)
class S3StoreConfig:
    bucket: str
    prefix: str = ""
    region: str = ""
    endpoint_url: str = ""
    # Secret references (env:NAME, file:/path); empty: boto3's default credential chain.
    access_key_id: str = ""
    secret_access_key: str = ""
    part_size: int = 8 * 1024 * 1024
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("s3 object store: the URI names no bucket (s3://BUCKET?...)")
        if self.part_size < MIN_PART_SIZE:
            raise ValueError("s3 object store: part_size_mb must be at least 5")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("s3 object store: access_key_id and secret_access_key go together")

    @classmethod
    def from_uri(cls, uri: str) -> S3StoreConfig:
        parts = urlsplit(uri)
        if parts.scheme != "s3":
            raise ValueError(f"not an s3:// URI: {uri!r}")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - _OPTIONS)
        if unknown:
            raise ValueError(f"s3 object store: unknown options {unknown}")
        return cls(
            bucket=parts.netloc,
            prefix=query.get("prefix", "") or parts.path.lstrip("/"),
            region=query.get("region", ""),
            endpoint_url=query.get("endpoint_url", ""),
            access_key_id=query.get("access_key_id", ""),
            secret_access_key=query.get("secret_access_key", ""),
            part_size=int(float(query.get("part_size_mb", "8")) * 1024 * 1024),
            timeout_s=float(query.get("timeout_s", "30")),
        )


class S3ObjectStore:
    def __init__(self, config: S3StoreConfig, encryption: AnyEncryptionHook | None = None) -> None:
        self.config = config
        self._encryption: AnyEncryptionHook = encryption or IdentityEncryption()
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            credentials: dict[str, str] = {}
            if self.config.access_key_id:
                credentials = {
                    "aws_access_key_id": resolve_secret(self.config.access_key_id),
                    "aws_secret_access_key": resolve_secret(self.config.secret_access_key),
                }
            self._client = boto3.session.Session().client(
                "s3",
                region_name=self.config.region or None,
                endpoint_url=self.config.endpoint_url or None,
                config=Config(
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=self.config.timeout_s,
                    read_timeout=self.config.timeout_s,
                ),
                **credentials,
            )
        return self._client

    def name_of(self, key: ObjectKey) -> str:
        return f"{self.config.prefix}{key}"

    async def put_stream(self, key: ObjectKey, chunks: AsyncIterable[bytes]) -> PutResult:
        with _outage_as_unavailable("store the upload"):
            return await self._put_stream(key, chunks)

    async def _put_stream(self, key: ObjectKey, chunks: AsyncIterable[bytes]) -> PutResult:
        client = await asyncio.to_thread(self._s3)
        bucket, name = self.config.bucket, self.name_of(key)
        digest = new_digest()
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def send_part() -> None:
            nonlocal upload_id
            if upload_id is None:
                created = await asyncio.to_thread(
                    client.create_multipart_upload, Bucket=bucket, Key=name
                )
                upload_id = str(created["UploadId"])
            number = len(parts) + 1
            body = bytes(buffer)
            buffer.clear()
            answer = await asyncio.to_thread(
                client.upload_part,
                Bucket=bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        try:
            async for piece in sealed(chunks, await open_encryptor(self._encryption, key), digest):
                buffer += piece
                if len(buffer) >= self.config.part_size:
                    await send_part()
            if upload_id is None:
                await asyncio.to_thread(
                    client.put_object, Bucket=bucket, Key=name, Body=bytes(buffer)
                )
            else:
                if buffer:
                    await send_part()
                await asyncio.to_thread(
                    client.complete_multipart_upload,
                    Bucket=bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                await asyncio.shield(self._abort(bucket, name, upload_id))
            raise
        return digest.result()

    async def _abort(self, bucket: str, name: str, upload_id: str) -> None:
        try:
            await asyncio.to_thread(
                self._s3().abort_multipart_upload, Bucket=bucket, Key=name, UploadId=upload_id
            )
        except Exception:  # the upload's own error is the one to report
            log.exception("could not abort multipart upload of %s", name)

    async def get_stream(self, key: ObjectKey) -> AsyncIterator[bytes]:
        client = await asyncio.to_thread(self._s3)
        try:
            with _outage_as_unavailable("read the object"):
                answer = await asyncio.to_thread(
                    client.get_object, Bucket=self.config.bucket, Key=self.name_of(key)
                )
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise ObjectNotFound("object not found") from None
            raise
        try:
            transform = await open_decryptor(self._encryption, key)
        except BaseException:
            answer["Body"].close()
            raise
        return unsealed(_read_body(answer["Body"]), transform)

    async def delete(self, key: ObjectKey) -> None:
        client = await asyncio.to_thread(self._s3)
        with _outage_as_unavailable("delete the object"):
            await asyncio.to_thread(self._delete_all_versions, client, self.name_of(key))

    def _delete_all_versions(self, client: Any, name: str) -> None:
        bucket = self.config.bucket
        client.delete_object(Bucket=bucket, Key=name)
        # In a versioned bucket the call above only adds a delete marker; the data stays
        # in older versions until each of them is deleted by id.
        try:
            listing = client.list_object_versions(Bucket=bucket, Prefix=name)
        except ClientError as exc:
            if _error_code(exc) in {"AccessDenied", "NotImplemented"}:
                log.warning("cannot list versions of %s: older versions may remain", name)
                return
            raise
        for entry in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
            if entry.get("Key") == name and entry.get("VersionId") not in (None, "null"):
                client.delete_object(Bucket=bucket, Key=name, VersionId=entry["VersionId"])

    async def exists(self, key: ObjectKey) -> bool:
        client = await asyncio.to_thread(self._s3)
        try:
            with _outage_as_unavailable("look up the object"):
                await asyncio.to_thread(
                    client.head_object, Bucket=self.config.bucket, Key=self.name_of(key)
                )
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return False
            raise
        return True

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _outage_as_unavailable(action: str) -> Iterator[None]:
    """botocore's connection errors and S3's 5xx answers (after botocore's own retries) are
    an outage of the store, not a bug: 503 ``object-store-unavailable``. Other client errors
    (404, 403) pass through for the caller to decide."""
    try:
        yield
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status < 500 and _error_code(exc) not in _THROTTLED:
            raise
        log.warning("object store failed to %s: %s", action, exc)
        raise ObjectStoreUnavailable(f"the object store failed to {action}; retry later") from exc
    except BotoCoreError as exc:
        # The message names the endpoint: for the log, not for the caller.
        log.warning("object store unreachable to %s: %s", action, exc)
        raise ObjectStoreUnavailable(
            f"the object store could not be reached to {action}; retry later"
        ) from exc


async def _read_body(body: Any) -> AsyncIterator[bytes]:
    try:
        with _outage_as_unavailable("send the object"):
            while chunk := await asyncio.to_thread(body.read, CHUNK_SIZE):
                yield bytes(chunk)
    finally:
        body.close()
