"""A provider that times every model call and counts its failures (docs/metrics.md).

Wrapped around whatever :func:`obsigen.inference.factory.make_provider` builds, so every
caller (the turn, the safeguards' judge, the model list) is measured without knowing it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from obsigen.inference.interfaces import (
    Completion,
    CompletionChunk,
    CompletionRequest,
    InferenceProvider,
)
from obsigen.metrics import INFERENCE_DURATION, INFERENCE_ERRORS, inference_error_label


class MeteredProvider:
    def __init__(self, inner: InferenceProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.region = inner.region

    def __repr__(self) -> str:
        return f"MeteredProvider({self.inner!r})"

    async def list_models(self) -> list[str]:
        return await self.inner.list_models()

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        try:
            completion = await self.inner.complete(request)
        except Exception as exc:
            INFERENCE_ERRORS.labels(self.name, inference_error_label(exc)).inc()
            raise
        INFERENCE_DURATION.labels(self.name, "complete").observe(time.perf_counter() - started)
        return completion

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        started = time.perf_counter()
        try:
            async for chunk in self.inner.stream(request):
                yield chunk
        except Exception as exc:
            INFERENCE_ERRORS.labels(self.name, inference_error_label(exc)).inc()
            raise
        # Not reached when the consumer stops early: only whole answers are timed.
        INFERENCE_DURATION.labels(self.name, "stream").observe(time.perf_counter() - started)


def metered(provider: InferenceProvider) -> InferenceProvider:
    return provider if isinstance(provider, MeteredProvider) else MeteredProvider(provider)
