"""A worker on the Redis stream broker: tasks run there, and SIGTERM loses none of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from tests.conftest import REDIS_URL, platform_settings, port_open, require_service
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.config import Settings
from obsigen.services import Services, build_services
from obsigen.tasks.queue import TaskQueue
from obsigen.tasks.worker import run_worker


@pytest.fixture
async def redis_settings(
    database_url: str, upstream_server: tuple[FakeUpstream, str], tmp_path: Path
) -> AsyncIterator[Settings]:
    require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    settings = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    settings.storage.redis_url = REDIS_URL
    settings.tasks.queue = f"obsigen:test:{uuid.uuid4().hex[:10]}"
    settings.tasks.shutdown_grace_s = 5
    settings.tasks.redelivery_after_s = 1
    settings.retention.interval_hours = 0
    yield settings
    redis = Redis.from_url(REDIS_URL)
    await redis.delete(
        settings.tasks.queue, f"autoclaim:{settings.tasks.queue}:{settings.tasks.queue}"
    )
    await redis.aclose()


async def pending(settings: Settings) -> int:
    redis = Redis.from_url(REDIS_URL)
    try:
        info = await redis.xpending(settings.tasks.queue, settings.tasks.queue)
        return int(info["pending"])
    finally:
        await redis.aclose()


class Slow:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finished: list[str] = []
        self.seconds = 0.5

    def task(self) -> Callable[[str], Awaitable[str]]:
        async def slow(item: str) -> str:
            return await self.run(item)

        return slow

    async def run(self, item: str) -> str:
        self.started.set()
        await asyncio.sleep(self.seconds)
        self.finished.append(item)
        return item


def worker_side(settings: Settings, slow: Slow) -> Services:
    services = build_services(settings)
    assert services.tasks is not None
    assert services.tasks.remote
    services.tasks.register("tests.slow", slow.task())
    return services


def api_side(settings: Settings) -> tuple[Services, TaskQueue]:
    services = build_services(settings)
    assert services.tasks is not None
    assert services.tasks.remote
    services.tasks.register("tests.slow", Slow().task())  # the sender needs only the name
    return services, services.tasks


async def test_sigterm_lets_the_task_in_hand_finish_and_acknowledges_it(
    redis_settings: Settings,
) -> None:
    slow = Slow()
    worker_services = worker_side(redis_settings, slow)
    api, queue = api_side(redis_settings)
    stop = asyncio.Event()
    try:
        await queue.kick("tests.slow", item="a")
        running = asyncio.create_task(run_worker(redis_settings, stop, worker_services))
        await asyncio.wait_for(slow.started.wait(), 20)
        stop.set()  # what the SIGTERM handler does
        await asyncio.wait_for(running, 20)
        assert slow.finished == ["a"]
        assert await pending(redis_settings) == 0
    finally:
        await api.aclose()
        await worker_services.aclose()


async def test_a_task_outlasting_the_grace_period_is_redelivered_to_the_next_worker(
    redis_settings: Settings,
) -> None:
    redis_settings.tasks.shutdown_grace_s = 0.2
    first = Slow()
    first.seconds = 4
    worker_services = worker_side(redis_settings, first)
    api, queue = api_side(redis_settings)
    next_services: Services | None = None
    try:
        await queue.kick("tests.slow", item="b")
        stop = asyncio.Event()
        running = asyncio.create_task(run_worker(redis_settings, stop, worker_services))
        await asyncio.wait_for(first.started.wait(), 20)
        stop.set()
        await asyncio.wait_for(running, 20)
        # Not finished, not acknowledged: still pending in the consumer group.
        assert first.finished == []
        assert await pending(redis_settings) == 1

        second = Slow()
        next_services = worker_side(redis_settings, second)
        stop = asyncio.Event()
        running = asyncio.create_task(run_worker(redis_settings, stop, next_services))
        try:
            for _ in range(200):
                if second.finished:
                    break
                await asyncio.sleep(0.05)
            assert second.finished == ["b"]
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
        assert await pending(redis_settings) == 0
        # The abandoned run ends on its own (a killed process would not); let it, before
        # closing its connections.
        for _ in range(200):
            if first.finished:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker_services.aclose()
        if next_services is not None:
            await next_services.aclose()
        await api.aclose()
