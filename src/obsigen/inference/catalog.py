"""Which model names we serve, cached so a chat request does not cost an upstream call."""

from __future__ import annotations

import asyncio
import time

from obsigen.inference.interfaces import InferenceProvider

CACHE_S = 60.0


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
                self._models = await self._provider.list_models()
                self._fetched_at = time.monotonic()
            return list(self._models)

    async def has(self, name: str) -> bool:
        return name in await self.models()
