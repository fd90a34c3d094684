"""Retries with exponential backoff, then the dead-letter path.

Taskiq's ``SmartRetryMiddleware`` decides when to retry (attempt count in the ``_retries``
label, same task id); this subclass changes three things:

- the delay doubles per attempt (``base * 2**(n-1)``, capped, with jitter); the parent's
  "exponent" grows linearly;
- the wait happens here, before the retry is sent: Redis streams have no delayed delivery
  (the ``delay`` label is ignored). The failed message stays unacknowledged meanwhile, so a
  worker killed during the wait still gets it redelivered;
- after the last attempt the task is recorded as a dead letter in the database.

A task cancelled by a shutdown is sent again at once and without counting an attempt: Taskiq
acknowledges a cancelled task like a finished one, and it must not be lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from taskiq import SmartRetryMiddleware
from taskiq.exceptions import NoResultError
from taskiq.kicker import AsyncKicker
from taskiq.message import TaskiqMessage
from taskiq.result import TaskiqResult

from obsigen.config import TasksSettings

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[TaskiqMessage, BaseException, int], Awaitable[None]]


class BackoffRetry(SmartRetryMiddleware):
    def __init__(self, settings: TasksSettings, dead_letter: DeadLetterSink) -> None:
        super().__init__(
            default_retry_count=settings.max_attempts,
            default_retry_label=True,
            no_result_on_retry=True,
            default_delay=settings.backoff_base_s,
            use_jitter=True,
            use_delay_exponent=True,
            max_delay_exponent=settings.backoff_max_s,
        )
        self._dead_letter = dead_letter
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        delay: float = min(self.default_delay * 2 ** (retries - 1), self.max_delay_exponent)
        # "Equal jitter": workers that failed together (the database restarting) spread out.
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - not a secret

    async def on_send(
        self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float
    ) -> None:
        await self.sleep(delay)
        await kicker.kiq(*message.args, **message.kwargs)

    async def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        if isinstance(exception, NoResultError):
            return
        if isinstance(exception, asyncio.CancelledError):
            log.warning("task %s %s interrupted: sent again", message.task_name, message.task_id)
            kicker: AsyncKicker[Any, Any] = AsyncKicker(
                task_name=message.task_name, broker=self.broker, labels=message.labels
            ).with_task_id(message.task_id)
            await kicker.kiq(*message.args, **message.kwargs)
            result.error = NoResultError()
            return
        attempts = int(message.labels.get("_retries", 0)) + 1
        limit = int(message.labels.get("max_retries", self.default_retry_count))
        await super().on_error(message, result, exception)
        if attempts >= limit:
            log.error(
                "task %s %s failed %d times: dead-lettered",
                message.task_name,
                message.task_id,
                attempts,
            )
            await self._dead_letter(message, exception, attempts)
