"""Configuration picks the inference backend."""

from __future__ import annotations

from obsigen.config import InferenceSettings
from obsigen.inference.interfaces import InferenceProvider
from obsigen.inference.local_llama import LocalLlamaProvider
from obsigen.inference.metered import metered
from obsigen.inference.openai_http import OpenAIHTTPProvider
from obsigen.residency import LOCAL
from obsigen.secretref import resolve_secret


def make_provider(settings: InferenceSettings) -> InferenceProvider:
    # Every call is timed and its failures counted (docs/metrics.md).
    return metered(_backend(settings))


def _backend(settings: InferenceSettings) -> InferenceProvider:
    if settings.provider == "local":
        return LocalLlamaProvider(
            model_path=settings.model_path,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            max_tokens=settings.max_tokens,
            region=LOCAL,
        )
    return OpenAIHTTPProvider(
        base_url=settings.base_url,
        model=settings.model,
        api_key=resolve_secret(settings.api_key),
        region=settings.region,
        timeout_s=settings.timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        max_retries=settings.max_retries,
        max_tokens=settings.max_tokens,
    )
