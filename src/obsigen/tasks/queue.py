"""The task queue the platform holds: a Taskiq broker, its middlewares and its tasks.

``tasks.broker`` picks the broker (``auto``: Redis when ``storage.redis_url`` is set):

- ``redis``: taskiq-redis ``RedisStreamBroker``. A message stays pending in the consumer
  group until the worker acknowledges it after running the task, so a killed worker's tasks
  go to another worker (at-least-once delivery). API processes only send; ``obsigen worker``
  processes run the tasks.
- ``memory``: Taskiq's ``InMemoryBroker``; tasks run in the sending process (``make run``
  needs nothing else). Nothing survives the process: the embedded ingestion keeps its
  start-up sweep for that reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker
from taskiq.kicker import AsyncKicker
from taskiq.message import TaskiqMessage
from taskiq_redis import RedisStreamBroker

from obsigen.config import Settings, TasksSettings
from obsigen.secrets.connect import redis_connection
from obsigen.tasks.dead_letters import describe, record_dead_letter
from obsigen.tasks.retry import BackoffRetry

TaskFunction = Callable[..., Awaitable[Any]]


def broker_kind(settings: Settings) -> str:
    if settings.tasks.broker == "auto":
        return "redis" if settings.storage.redis_url else "memory"
    return settings.tasks.broker


def make_broker(settings: Settings) -> AsyncBroker:
    if broker_kind(settings) == "memory":
        return InMemoryBroker(max_async_tasks=settings.tasks.concurrency)
    if not settings.storage.redis_url:
        raise ValueError("tasks.broker = 'redis' needs storage.redis_url")
    tasks = settings.tasks
    # The password comes from its reference at connect time, never from the URL.
    url, auth = redis_connection(settings.storage.redis_url, settings.storage.redis_password)
    return ReclaimingStreamBroker(
        url,
        queue_name=tasks.queue,
        consumer_group_name=tasks.queue,
        # "0", not "$": tasks sent before any worker created the group are not skipped.
        consumer_id="0",
        # One message per read: a worker does not hoard tasks an idle worker could run, and a
        # killed worker strands at most what it was running.
        xread_count=1,
        xread_block=1000,
        idle_timeout=int(tasks.redelivery_after_s * 1000),
        max_connection_pool_size=tasks.concurrency + 8,
        **auth,
    )


class ReclaimingStreamBroker(RedisStreamBroker):
    """``RedisStreamBroker`` whose listener also reclaims when the stream is quiet.

    taskiq-redis 1.2.4 runs XAUTOCLAIM only after a read that returned new messages: a dead
    worker's task waited for the next upload. Here every turn of the loop claims messages
    idle for longer than ``idle_timeout``. XAUTOCLAIM is atomic, so two workers claiming at
    once get different messages; no lock is needed.
    """

    # Set by a stopping worker: the loop ends at its next turn. Cancelling the read instead is
    # not reliable: redis-py's retry can swallow the cancellation mid-read, and the loop
    # then never ends (and never gives its connection back).
    closing = False

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        async with Redis(connection_pool=self.connection_pool) as redis:
            while not self.closing:
                fetched = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    noack=False,
                    count=self.count,
                )
                # redis-py types stream replies loosely: [(stream, [(id, fields), ...])].
                streams: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = cast(
                    Any, fetched or []
                )
                for _stream, messages in streams:
                    for message_id, fields in messages:
                        yield self._ackable(message_id, fields)
                claimed = await redis.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.count or 1,
                )
                for message_id, fields in claimed[1]:
                    if fields:  # a message deleted from the stream meanwhile has none
                        yield self._ackable(message_id, fields)

    def _ackable(self, message_id: bytes, fields: dict[bytes, bytes]) -> AckableMessage:
        return AckableMessage(
            data=fields[b"data"],
            ack=self._ack_generator(id=message_id.decode(), queue_name=self.queue_name),
        )


class TaskQueue:
    """Sends tasks by name; with the in-memory broker, also runs them here."""

    def __init__(
        self,
        broker: AsyncBroker,
        settings: TasksSettings,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.sessions = sessions
        self.retry = BackoffRetry(settings, self._dead_letter)
        broker.add_middlewares(self.retry)
        self._started = False

    @property
    def remote(self) -> bool:
        """True when other processes (``obsigen worker``) run the tasks."""
        return not isinstance(self.broker, InMemoryBroker)

    def register(self, name: str, func: TaskFunction) -> None:
        self.broker.register_task(func, task_name=name)

    async def start(self) -> None:
        if not self._started:
            await self.broker.startup()
            self._started = True

    async def kick(self, name: str, **kwargs: Any) -> str:
        """Send task ``name``; returns its task id. Arguments are JSON values, by keyword."""
        await self.start()
        task_id = uuid.uuid4().hex
        kicker: AsyncKicker[Any, Any] = AsyncKicker(
            task_name=name, broker=self.broker, labels={}
        ).with_task_id(task_id)
        await kicker.kiq(**kwargs)
        return task_id

    async def join(self) -> None:
        """Wait for tasks running in this process (in-memory broker: tests, shutdown)."""
        if isinstance(self.broker, InMemoryBroker):
            # wait_all() sees only the tasks running when called; retries start new ones.
            while self.broker._running_tasks:
                await self.broker.wait_all()

    async def aclose(self) -> None:
        if self._started:
            await self.join()
            await self.broker.shutdown()
            self._started = False

    async def _dead_letter(self, message: TaskiqMessage, exc: BaseException, attempts: int) -> None:
        await record_dead_letter(
            self.sessions,
            task_id=message.task_id,
            task_name=message.task_name,
            args=message.args,
            kwargs=message.kwargs,
            error=describe(exc),
            attempts=attempts,
        )


def build_task_queue(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> TaskQueue:
    """The queue for ``settings``; the caller registers the tasks it can run."""
    return TaskQueue(make_broker(settings), settings.tasks, sessions)
