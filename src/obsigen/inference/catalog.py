"""Which model names we serve, cached so a chat request does not cost an upstream call."""

from __future__ import annotations

import asyncio
import logging
import time

from obsigen.errors import UpstreamFailed, UpstreamTimeout
from obsigen.inference.errors import InferenceError, InferenceTimeout
from obsigen.inference.interfaces import InferenceProvider

CACHE_S = 60.0
# While the upstream is down, a list we already have is served and asked for again this often.
STALE_RETRY_S = 5.0

log = logging.getLogger(__name__)


class ModelCatalog:
    def __init__(self, provider: InferenceProvider, configured: str = "") -> None:
        self._provider = provider
        self._configured = configured
        self._models: list[str] = []
        self._fetched_at = -CACHE_S
        self._lock = asyncio.Lock()

    async def models(self) -> list[str]:
        # A configured model pins what we serve; otherwise serve what the provider offers.
        if self._configured:
            return [self._configured]
        async with self._lock:
            if time.monotonic() - self._fetched_at >= CACHE_S:
                try:
                    self._models = await self._provider.list_models()
                except InferenceError as exc:
                    if not self._models:
                        # Nothing to fall back on: the same 502/504 a turn gives, not a 500.
                        error = (
                            UpstreamTimeout if isinstance(exc, InferenceTimeout) else UpstreamFailed
                        )
                        raise error(exc.reason) from exc
                    log.warning("model list unavailable, serving the last one: %s", exc.reason)
                    self._fetched_at = time.monotonic() - CACHE_S + STALE_RETRY_S
                    return list(self._models)
                self._fetched_at = time.monotonic()
            return list(self._models)

    async def has(self, name: str) -> bool:
        return name in await self.models()
