"""``/api/v1/files`` end to end: every control with its attack and its normal case."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.fakes.audit_receivers import S3_REGION, MotoS3Receiver
from tests.integration.files.conftest import FilesPlatform
from tests.unit.files.file_samples import (
    allowed_samples,
    high_ratio_docx,
    many_entries_docx,
    nested_zip_docx,
    png,
)

from obsigen.authz.permissions import Role
from obsigen.db.files_models import StoredFile
from obsigen.db.models import AuditEventRecord
from obsigen.files.s3_store import S3ObjectStore, S3StoreConfig
from obsigen.identity.tenants import tenant_by_name

BOUNDARY = "obsigen-test-boundary-7d1e"
MB = 1024 * 1024


def multipart(filename: str, data: bytes, field: str = "file") -> tuple[bytes, dict[str, str]]:
    """Built by hand: the file name goes over the wire exactly as given (httpx would
    percent-encode control characters)."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def upload(platform: FilesPlatform, key: str, filename: str, data: bytes) -> httpx.Response:
    body, headers = multipart(filename, data)
    return await platform.client.post(
        "/api/v1/files", content=body, headers={**headers, **platform.auth(key)}
    )


async def tenant_id(platform: FilesPlatform, name: str) -> str:
    async with platform.services.sessions() as session:
        return (await tenant_by_name(session, name)).id


async def file_rows(platform: FilesPlatform, tenant: str) -> list[StoredFile]:
    async with platform.services.sessions() as session:
        rows = await session.scalars(select(StoredFile).where(StoredFile.tenant_id == tenant))
        return list(rows)


async def audit_events(platform: FilesPlatform, tenant: str, type_: str) -> list[dict[str, Any]]:
    async with platform.services.sessions() as session:
        records = await session.scalars(
            select(AuditEventRecord.record)
            .where(AuditEventRecord.tenant_id == tenant, AuditEventRecord.event_type == type_)
            .order_by(AuditEventRecord.seq)
        )
        return [json.loads(r) for r in records]


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/" + slug)


@pytest.mark.parametrize("kind", sorted(allowed_samples()))
async def test_allowed_types_upload_list_and_download_identically(
    files_platform: FilesPlatform, kind: str
) -> None:
    platform = files_platform
    tenant = await platform.tenant()
    key = await platform.api_key(tenant, Role.MEMBER)
    name, data = allowed_samples()[kind]

    response = await upload(platform, key, name, data)
    assert response.status_code == 201, response.text
    meta = response.json()
    assert meta["name"] == name
    assert meta["size"] == len(data)
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()

    listed = await platform.client.get("/api/v1/files", headers=platform.auth(key))
    assert [f["id"] for f in listed.json()] == [meta["id"]]
    single = await platform.client.get(f"/api/v1/files/{meta['id']}", headers=platform.auth(key))
    assert single.json() == meta

    content = await platform.client.get(
        f"/api/v1/files/{meta['id']}/content", headers=platform.auth(key)
    )
    assert content.status_code == 200
    assert content.content == data
    assert content.headers["x-content-type-options"] == "nosniff"
    assert content.headers["content-type"].split(";")[0] == meta["content_type"].split(";")[0]
    assert content.headers["content-disposition"].startswith(f'attachment; filename="{name}"')

    tid = await tenant_id(platform, tenant)
    [row] = await file_rows(platform, tid)
    assert (row.status, row.object_key) == ("ready", f"{tid}/{meta['id']}")
    assert platform.stored_files() == [platform.path_of_key(row.object_key)]
    [event] = await audit_events(platform, tid, "file.upload")
    assert event["outcome"] == "success"
    assert event["data"]["sha256"] == meta["sha256"]
    assert len(await audit_events(platform, tid, "file.download")) == 1


@pytest.mark.parametrize(
    ("name", "data", "status", "slug"),
    [
        ("pixel.pdf", png(), 415, "unsupported-file-type"),  # content/extension mismatch
        ("tool.exe", b"MZ\x90\x00" + b"\x00" * 100, 415, "unsupported-file-type"),
        ("tool.txt", b"MZ\x90\x00" + b"\x00" * 100, 415, "unsupported-file-type"),
        ("page.html", b"<html><script>alert(1)</script></html>", 415, "unsupported-file-type"),
        ("page.txt", b"<html><script>alert(1)</script></html>", 415, "unsupported-file-type"),
        ("image.svg", b'<svg onload="alert(1)"/>', 415, "unsupported-file-type"),
        ("image.md", b'<svg onload="alert(1)"/>', 415, "unsupported-file-type"),
        ("archive.zip", b"PK\x03\x04", 415, "unsupported-file-type"),
        ("bomb.docx", high_ratio_docx(), 422, "unsafe-archive"),
        ("nested.docx", nested_zip_docx(), 422, "unsafe-archive"),
        ("nested2.docx", nested_zip_docx(disguised=True), 422, "unsafe-archive"),
        ("empty.txt", b"", 422, "invalid-input"),
    ],
)
async def test_refused_uploads_leave_nothing(
    files_platform: FilesPlatform, name: str, data: bytes, status: int, slug: str
) -> None:
    platform = files_platform
    tenant = await platform.tenant()
    key = await platform.api_key(tenant)
    response = await upload(platform, key, name, data)
    assert_problem(response, status, slug)
    tid = await tenant_id(platform, tenant)
    assert await file_rows(platform, tid) == []
    assert platform.stored_files() == []
    [event] = await audit_events(platform, tid, "file.upload")
    assert (event["outcome"], event["data"]["reason"]) == ("failure", slug)


async def test_too_many_zip_entries_are_refused(files_platform: FilesPlatform) -> None:
    platform = files_platform
    platform.settings.files.zip_max_entries = 100
    key = await platform.api_key()
    assert_problem(
        await upload(platform, key, "many.docx", many_entries_docx(150)), 422, "unsafe-archive"
    )
    assert (await upload(platform, key, "few.docx", many_entries_docx(50))).status_code == 201


async def test_oversize_stream_stops_early_with_bounded_memory(
    files_platform: FilesPlatform,
) -> None:
    platform = files_platform
    tenant = await platform.tenant()
    key = await platform.api_key(tenant)
    piece = b"a" * (64 * 1024)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        head, _ = multipart("big.txt", b"")
        yield head[: -len(f"\r\n--{BOUNDARY}--\r\n")]
        for _ in range(50 * 16):  # 50 MB against a 1 MB limit
            sent += len(piece)
            yield piece
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    tracemalloc.start()
    started = time.monotonic()
    try:
        response = await platform.client.post(
            "/api/v1/files",
            content=body(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                **platform.auth(key),
            },
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started

    assert_problem(response, 413, "too-large")
    assert sent < 3 * MB, "the server kept reading past the limit"
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB: the upload was held in memory"
    assert elapsed < 20
    assert platform.stored_files() == []
    assert await file_rows(platform, await tenant_id(platform, tenant)) == []


async def test_declared_oversize_is_refused_before_reading(files_platform: FilesPlatform) -> None:
    platform = files_platform
    key = await platform.api_key()
    body, headers = multipart("x.txt", b"small")
    response = await platform.client.post(
        "/api/v1/files",
        content=body,
        headers={**headers, **platform.auth(key), "Content-Length": str(5 * MB)},
    )
    assert_problem(response, 413, "too-large")
    assert platform.stored_files() == []


async def test_within_the_limit_is_accepted(files_platform: FilesPlatform) -> None:
    platform = files_platform
    key = await platform.api_key()
    data = b"line of text\n" * (900 * 1024 // 13)
    response = await upload(platform, key, "almost.txt", data)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/evil.md", "evil.md"),
        ("..\\..\\x.md", "x.md"),
        ("bell\x07and\x1bescape.md", "bellandescape.md"),
        ("report\u202e.md", "report.md"),
        ("r\u00e9sum\u00e9.md", "r\u00e9sum\u00e9.md"),
    ],
)
async def test_names_are_sanitised(files_platform: FilesPlatform, raw: str, expected: str) -> None:
    platform = files_platform
    key = await platform.api_key()
    response = await upload(platform, key, raw, b"# hello\n")
    assert response.status_code == 201, response.text
    assert response.json()["name"] == expected
    content = await platform.client.get(
        f"/api/v1/files/{response.json()['id']}/content", headers=platform.auth(key)
    )
    assert "\x07" not in content.headers["content-disposition"]


async def test_bidi_disguised_executable_is_refused(files_platform: FilesPlatform) -> None:
    platform = files_platform
    key = await platform.api_key()
    # Renders as "invoiceexe.pdf"; the real extension is .exe.
    response = await upload(platform, key, "invoice\u202efdp.exe", b"%PDF-1.4\n")
    assert_problem(response, 415, "unsupported-file-type")


async def test_other_tenants_and_other_users_get_404(files_platform: FilesPlatform) -> None:
    platform = files_platform
    tenant = await platform.tenant()
    owner = await platform.api_key(tenant)
    colleague = await platform.api_key(tenant)
    admin = await platform.user_token(tenant, Role.ADMIN)
    stranger = await platform.api_key(await platform.tenant())
    name, data = allowed_samples()["pdf"]
    file_id = (await upload(platform, owner, name, data)).json()["id"]

    for other in (stranger, colleague, admin):
        for path in (f"/api/v1/files/{file_id}", f"/api/v1/files/{file_id}/content"):
            response = await platform.client.get(path, headers=platform.auth(other))
            assert_problem(response, 404, "not-found")
        listed = await platform.client.get("/api/v1/files", headers=platform.auth(other))
        assert listed.json() == []
        deleted = await platform.client.delete(
            f"/api/v1/files/{file_id}", headers=platform.auth(other)
        )
        assert_problem(deleted, 404, "not-found")
    missing = await platform.client.get(
        f"/api/v1/files/{uuid.uuid4().hex}", headers=platform.auth(owner)
    )
    assert_problem(missing, 404, "not-found")
    still = await platform.client.get(
        f"/api/v1/files/{file_id}/content", headers=platform.auth(owner)
    )
    assert still.content == data


async def test_delete_removes_object_and_row(files_platform: FilesPlatform) -> None:
    platform = files_platform
    tenant = await platform.tenant()
    key = await platform.api_key(tenant)
    name, data = allowed_samples()["docx"]
    file_id = (await upload(platform, key, name, data)).json()["id"]
    assert len(platform.stored_files()) == 1

    response = await platform.client.delete(f"/api/v1/files/{file_id}", headers=platform.auth(key))
    assert response.status_code == 204
    assert platform.stored_files() == []
    tid = await tenant_id(platform, tenant)
    assert await file_rows(platform, tid) == []
    again = await platform.client.delete(f"/api/v1/files/{file_id}", headers=platform.auth(key))
    assert_problem(again, 404, "not-found")
    [event] = await audit_events(platform, tid, "file.delete")
    assert event["target"] == {"kind": "file", "id": file_id}


async def test_viewer_cannot_upload_and_non_multipart_is_refused(
    files_platform: FilesPlatform,
) -> None:
    platform = files_platform
    tenant = await platform.tenant()
    viewer = await platform.api_key(tenant, Role.VIEWER)
    assert_problem(await upload(platform, viewer, "a.txt", b"a"), 403, "forbidden")
    member = await platform.api_key(tenant)
    response = await platform.client.post(
        "/api/v1/files", json={"file": "a"}, headers=platform.auth(member)
    )
    assert_problem(response, 415, "unsupported-media-type")
    no_file = await platform.client.post(
        "/api/v1/files",
        content=multipart("a.txt", b"a", field="other")[0],
        headers={**multipart("", b"")[1], **platform.auth(member)},
    )
    assert_problem(no_file, 422, "invalid-input")


async def test_s3_store_upload_download_delete(
    files_platform: FilesPlatform, moto_s3: MotoS3Receiver
) -> None:
    platform = files_platform
    prefix = f"http-{uuid.uuid4().hex[:8]}/"
    store = S3ObjectStore(
        S3StoreConfig(
            bucket=moto_s3.bucket,
            prefix=prefix,
            region=S3_REGION,
            endpoint_url=moto_s3.endpoint_url,
        )
    )
    platform.services.objects = store
    tenant = await platform.tenant()
    key = await platform.api_key(tenant)
    name, data = allowed_samples()["xlsx"]
    meta = (await upload(platform, key, name, data)).json()
    tid = await tenant_id(platform, tenant)
    s3 = moto_s3.client()
    s3.head_object(Bucket=moto_s3.bucket, Key=f"{prefix}{tid}/{meta['id']}")
    content = await platform.client.get(
        f"/api/v1/files/{meta['id']}/content", headers=platform.auth(key)
    )
    assert content.content == data

    refused = await upload(platform, key, "nested.docx", nested_zip_docx())
    assert refused.status_code == 422
    listing = s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=prefix)
    assert [o["Key"] for o in listing["Contents"]] == [f"{prefix}{tid}/{meta['id']}"]

    await platform.client.delete(f"/api/v1/files/{meta['id']}", headers=platform.auth(key))
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        s3.head_object(Bucket=moto_s3.bucket, Key=f"{prefix}{tid}/{meta['id']}")
    await store.aclose()
