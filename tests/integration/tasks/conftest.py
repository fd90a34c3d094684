"""A platform whose task queue retries fast, and helpers to wait for its tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import platform_settings, running_platform
from tests.fakes.openai_upstream import FakeUpstream
from tests.integration.retrieval.conftest import RetrievalPlatform

from obsigen.db.files_models import StoredFile
from obsigen.tasks.queue import TaskQueue


class TasksPlatform(RetrievalPlatform):
    @property
    def queue(self) -> TaskQueue:
        assert self.services.tasks is not None
        return self.services.tasks

    async def tenant_id_of_file(self, file_id: str) -> str:
        async with self.services.sessions() as session:
            found = await session.scalar(
                select(StoredFile.tenant_id).where(StoredFile.id == file_id)
            )
        assert found is not None
        return found


@pytest.fixture
async def tasks_platform(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[TasksPlatform]:
    settings = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    settings.tasks.max_attempts = 3
    settings.tasks.backoff_base_s = 0.01
    settings.tasks.backoff_max_s = 0.05
    async with running_platform(settings, upstream) as running:
        yield TasksPlatform(running.settings, running.services, running.client, upstream)
