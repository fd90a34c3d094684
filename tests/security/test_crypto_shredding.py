"""Crypto-shredding: after `tenant erase`, the tenant's rows and objects cannot be read by
someone holding the whole database and bucket, including copies taken before the erasure.

Also: ciphertext moved between tenants or rows is refused; the neighbour tenant is untouched.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from tests.conftest import Platform

from obsigen.audit.events import AuditEvent
from obsigen.db.models import Tenant
from obsigen.db.tenant_keys_models import TenantDataKey
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import ObjectKey
from obsigen.identity.tenants import tenant_by_name
from obsigen.tenantkeys import aead
from obsigen.tenantkeys.cipher import TenantCipher
from obsigen.tenantkeys.erase import erase_tenant
from obsigen.tenantkeys.errors import CiphertextInvalid, TenantKeysDestroyed
from obsigen.tenantkeys.keyring import TenantKeyring
from obsigen.tenantkeys.objects import TenantObjectEncryption

CONFIDENTIAL_TEXT = "Project Nightjar acquisition price 41.7M"
BOUNDARY = "obsigen-shred-boundary"


class Recorder:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        self.events.append(event)


async def seed(platform: Platform) -> tuple[str, str, str]:
    """A tenant with a conversation and an uploaded file; returns tenant id, key, file id."""
    name = await platform.tenant("shred")
    key = await platform.api_key(name)
    chat = await platform.chat(key, f"remember: {CONFIDENTIAL_TEXT}")
    assert chat.status_code == 200, chat.text
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="n.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    body = head + (CONFIDENTIAL_TEXT + "\n").encode() * 5000 + f"\r\n--{BOUNDARY}--\r\n".encode()
    uploaded = await platform.client.post(
        "/api/v1/files",
        content=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            **platform.auth(key),
        },
    )
    assert uploaded.status_code == 201, uploaded.text
    async with platform.services.sessions() as session:
        tenant_id = (await tenant_by_name(session, name)).id
    return tenant_id, key, uploaded.json()["id"]


async def raw_messages(platform: Platform, tenant_id: str) -> list[tuple[str, str]]:
    async with platform.services.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, content FROM messages WHERE tenant_id = :t"), {"t": tenant_id}
        )
        return [(str(r[0]), str(r[1])) for r in rows]


def raw_objects(platform: Platform, tenant_id: str) -> dict[str, bytes]:
    root = platform.settings.paths.data_dir / "objects" / tenant_id
    return {p.name: p.read_bytes() for p in root.iterdir()} if root.exists() else {}


async def test_data_at_rest_is_ciphertext_and_reads_back(platform: Platform) -> None:
    tenant_id, key, file_id = await seed(platform)
    stored = await raw_messages(platform, tenant_id)
    assert stored
    assert all(aead.is_envelope(content) for _, content in stored)
    assert not any(CONFIDENTIAL_TEXT in content for _, content in stored)
    (blob,) = raw_objects(platform, tenant_id).values()
    assert blob.startswith(aead.MAGIC)
    assert CONFIDENTIAL_TEXT.encode() not in blob

    listed = await platform.client.get("/api/v1/conversations", headers=platform.auth(key))
    detail = await platform.client.get(
        f"/api/v1/conversations/{listed.json()[0]['id']}", headers=platform.auth(key)
    )
    assert any(CONFIDENTIAL_TEXT in m["content"] for m in detail.json()["messages"])
    download = await platform.client.get(
        f"/api/v1/files/{file_id}/content", headers=platform.auth(key)
    )
    assert download.status_code == 200
    assert download.content == (CONFIDENTIAL_TEXT + "\n").encode() * 5000


async def test_erasure_shreds_rows_and_objects_even_from_earlier_copies(
    platform: Platform,
) -> None:
    tenant_id, _, _ = await seed(platform)
    neighbour_id, neighbour_key, neighbour_file = await seed(platform)
    # The attacker's copies, taken before the erasure: rows, objects and wrapped keys.
    messages_before = await raw_messages(platform, tenant_id)
    objects_before = raw_objects(platform, tenant_id)
    assert messages_before
    assert objects_before
    encryption = platform.services.tenant_encryption
    assert encryption is not None
    recorder = Recorder()

    report = await erase_tenant(
        sessions=platform.services.sessions,
        keyring=encryption.keyring,
        store=platform.services.objects,
        audit=recorder,  # type: ignore[arg-type]
        tenant=tenant_id,
        actor={"kind": "cli", "id": "test"},
    )

    assert report.keys_destroyed == 1
    assert report.objects_deleted == 1
    assert [e.type for e in recorder.events] == ["tenant.erase"]
    assert recorder.events[0].data["keys_destroyed"] == 1
    async with platform.services.sessions() as session:
        assert await session.get(Tenant, tenant_id) is None
        keys = (
            await session.scalars(select(TenantDataKey).where(TenantDataKey.tenant_id == tenant_id))
        ).all()
    assert [(k.state, k.wrapped) for k in keys] == [("destroyed", None)]
    assert await raw_messages(platform, tenant_id) == []
    assert raw_objects(platform, tenant_id) == {}

    # Full access afterwards, a fresh process (no cache), the KEK provider itself, and the
    # copies from before: nothing opens.
    fresh = TenantKeyring(encryption.keyring.provider, platform.services.sessions, ttl_s=0)
    cipher = TenantCipher(fresh, read_plaintext=False)
    for row_id, content in messages_before:
        with pytest.raises(TenantKeysDestroyed):
            await cipher.decrypt_text(
                tenant_id, content, table="messages", column="content", row_id=row_id
            )
    store = LocalObjectStore(
        platform.settings.paths.data_dir / "objects", TenantObjectEncryption(fresh)
    )
    for object_id, blob in objects_before.items():
        path = store.path_of(ObjectKey(tenant_id, object_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)  # the bucket copy restored
        with pytest.raises(TenantKeysDestroyed):
            await store.get_stream(ObjectKey(tenant_id, object_id))

    # The neighbour reads on.
    detail = await platform.client.get(
        "/api/v1/conversations", headers=platform.auth(neighbour_key)
    )
    assert detail.status_code == 200
    download = await platform.client.get(
        f"/api/v1/files/{neighbour_file}/content", headers=platform.auth(neighbour_key)
    )
    assert download.status_code == 200
    assert CONFIDENTIAL_TEXT.encode() in download.content
    assert neighbour_id != tenant_id


async def test_ciphertext_swapped_between_tenants_or_rows_is_refused(platform: Platform) -> None:
    first, _, _ = await seed(platform)
    second, second_key, _ = await seed(platform)
    (row_a, sealed_a), *_ = await raw_messages(platform, first)
    victims = await raw_messages(platform, second)
    (row_b, _), (row_c, sealed_c) = victims[0], victims[1]
    cipher = TenantCipher(
        TenantKeyring(
            platform.services.tenant_encryption.keyring.provider,  # type: ignore[union-attr]
            platform.services.sessions,
            ttl_s=0,
        )
    )
    names: dict[str, Any] = {"table": "messages", "column": "content"}
    with pytest.raises(CiphertextInvalid):  # another tenant's row pasted in
        await cipher.decrypt_text(second, sealed_a, row_id=row_b, **names)
    with pytest.raises(CiphertextInvalid):  # another row of the same tenant
        await cipher.decrypt_text(second, sealed_c, row_id=row_b, **names)
    assert await cipher.decrypt_text(second, sealed_c, row_id=row_c, **names)
    # Through the API: a swapped body turns the read into an error, never into the other text.
    async with platform.services.engine.begin() as conn:
        await conn.execute(
            text("UPDATE messages SET content = :c WHERE id = :i"), {"c": sealed_a, "i": row_b}
        )
    listed = await platform.client.get("/api/v1/conversations", headers=platform.auth(second_key))
    detail = await platform.client.get(
        f"/api/v1/conversations/{listed.json()[0]['id']}", headers=platform.auth(second_key)
    )
    assert detail.status_code == 500
    assert detail.headers["content-type"].startswith("application/problem+json")
    assert "tenant-ciphertext-invalid" in detail.json()["type"]
    assert row_a != row_b
