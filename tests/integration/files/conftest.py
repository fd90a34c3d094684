"""The app with the files router and an object store mounted (until app.py wires them), and
a moto S3 server on loopback for the S3 store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import Platform, platform_settings, require_service
from tests.fakes.audit_receivers import MotoS3Receiver, aws_test_env
from tests.fakes.key_services import moto_available
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.app import create_app
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import ObjectKey
from obsigen.services import build_services


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Receiver]:
    require_service("moto (boto3, flask) for a local S3", moto_available())
    with aws_test_env():
        receiver = MotoS3Receiver("obsigen-files")
        receiver.start()
        try:
            yield receiver
        finally:
            receiver.stop()


class FilesPlatform(Platform):
    store: LocalObjectStore

    def path_of_key(self, object_key: str) -> Path:
        return self.store.path_of(ObjectKey.parse(object_key))

    def stored_files(self) -> list[Path]:
        """Every file under the store's root, partial uploads included."""
        root = self.store.root
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
async def files_platform(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[FilesPlatform]:
    settings = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    settings.files.max_upload_mb = 1
    services = build_services(settings)
    store = LocalObjectStore(settings.paths.data_dir / "objects")
    services.objects = store
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            platform = FilesPlatform(settings, services, client, upstream)
            platform.store = store
            yield platform
    await services.aclose()
