"""The app with its retrieval service, and helpers to upload files, wait for their ingestion
and read audit events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import Platform, platform_settings
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.app import create_app
from obsigen.db.models import AuditEventRecord
from obsigen.identity.tenants import tenant_by_name
from obsigen.retrieval.service import RetrievalService, retrieval_of
from obsigen.services import build_services

BOUNDARY = "obsigen-retrieval-boundary-51c2"
DATA_DIR = Path(__file__).parents[2] / "data" / "retrieval"


class RetrievalPlatform(Platform):
    @property
    def retrieval(self) -> RetrievalService:
        found = retrieval_of(self.services)
        assert found is not None
        return found

    async def upload(self, key: str, filename: str, data: bytes) -> dict[str, Any]:
        head = (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body = head + data + f"\r\n--{BOUNDARY}--\r\n".encode()
        response = await self.client.post(
            "/api/v1/files",
            content=body,
            headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                **self.auth(key),
            },
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def indexed(self, key: str, filename: str, data: bytes) -> dict[str, Any]:
        """Upload, wait for the ingestion, return the file's progress."""
        uploaded = await self.upload(key, filename, data)
        await self.retrieval.ingestion.join()
        response = await self.client.get(
            f"/api/v1/files/{uploaded['id']}/ingestion", headers=self.auth(key)
        )
        assert response.status_code == 200, response.text
        progress: dict[str, Any] = response.json()
        return progress

    async def search(self, key: str, q: str, top_k: int = 5) -> httpx.Response:
        return await self.client.get(
            "/api/v1/search", params={"q": q, "top_k": top_k}, headers=self.auth(key)
        )

    async def tenant_id(self, name: str) -> str:
        async with self.services.sessions() as session:
            return (await tenant_by_name(session, name)).id

    async def audit_events(self, tenant: str, type_: str) -> list[dict[str, Any]]:
        tenant_id = await self.tenant_id(tenant)
        async with self.services.sessions() as session:
            records = await session.scalars(
                select(AuditEventRecord.record)
                .where(
                    AuditEventRecord.tenant_id == tenant_id, AuditEventRecord.event_type == type_
                )
                .order_by(AuditEventRecord.seq)
            )
            return [json.loads(r) for r in records]


@pytest.fixture
async def retrieval_platform(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[RetrievalPlatform]:
    settings = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    services = build_services(settings)
    app = create_app(settings, services)
    retrieval = retrieval_of(services)
    assert retrieval is not None
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield RetrievalPlatform(settings, services, client, upstream)
        await retrieval.aclose()
    await services.aclose()
