"""Any OpenAI-compatible chat-completions endpoint (Mistral, Azure OpenAI, vLLM, llama.cpp...)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from obsigen.egress import EgressAllowList
from obsigen.inference.errors import (
    InferenceBadResponse,
    InferenceError,
    InferenceRejected,
    InferenceTimeout,
    InferenceUnavailable,
)
from obsigen.inference.interfaces import Completion, CompletionChunk, CompletionRequest
from obsigen.inference.openai_wire import (
    SSEDecoder,
    StreamAssembler,
    decode_completion,
    decode_json,
    encode_request,
    error_message,
)

# Statuses that mean "not now": the upstream did no work, so sending again is safe.
_RETRY_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
_BACKOFF_BASE_S = 0.2
_BACKOFF_CAP_S = 2.0
_MAX_BODY_BYTES = 16 * 1024 * 1024  # a completion is text; anything bigger is a broken upstream
_MAX_ERROR_BYTES = 64 * 1024
# What may follow [DONE] before the connection is given up instead of reused.
_DRAIN_EVENTS = 8
_DRAIN_TIMEOUT_S = 0.5


class OpenAIHTTPProvider:
    """One ``httpx.AsyncClient`` per provider; call :meth:`aclose` when done."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str = "",
        api_key: str = "",
        region: str = "",
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        max_tokens: int = 512,
        transport: httpx.AsyncBaseTransport | None = None,
        egress: EgressAllowList | None = None,
    ) -> None:
        self.region = region
        self._model = model
        self._max_tokens = max_tokens
        self._max_retries = max_retries
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        # Kept only to scrub it from upstream error texts that echo it back.
        self._api_key = api_key
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            # timeout_s bounds each wait for bytes; complete() also bounds the whole answer.
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=connect_timeout_s),
            follow_redirects=False,
            trust_env=False,  # egress is decided by our configuration, not by proxy variables
            transport=transport,
            # Only the configured endpoint: nothing else is ever reached from here.
            event_hooks=(egress or EgressAllowList.from_urls([base_url])).event_hooks(),
        )

    def __repr__(self) -> str:
        return (
            f"OpenAIHTTPProvider(base_url={str(self._client.base_url)!r}, region={self.region!r})"
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ready(self) -> bool:
        try:
            response = await self._client.get("models", timeout=self._connect_timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def list_models(self) -> list[str]:
        async with self._open("GET", "models") as response:
            body = decode_json(await self._read(response, _MAX_BODY_BYTES))
        data = body.get("data")
        if not isinstance(data, list):
            raise InferenceBadResponse("upstream model list has no data array")
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def complete(self, request: CompletionRequest) -> Completion:
        body = encode_request(request, model=self._model, max_tokens=self._max_tokens, stream=False)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._open("POST", "chat/completions", body) as response:
                    raw = await self._read(response, _MAX_BODY_BYTES)
        except TimeoutError:
            raise InferenceTimeout("the model did not answer in time", retryable=True) from None
        return decode_completion(decode_json(raw), model=body["model"])

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        body = encode_request(request, model=self._model, max_tokens=self._max_tokens, stream=True)
        async with self._open("POST", "chat/completions", body) as response:
            if response.headers.get("content-type", "").startswith("application/json"):
                # The upstream ignored "stream": replay its whole answer as one stream.
                whole = decode_completion(
                    decode_json(await self._read(response, _MAX_BODY_BYTES)), model=body["model"]
                )
                if whole.content:
                    yield CompletionChunk(content_delta=whole.content)
                yield CompletionChunk(
                    tool_calls=whole.tool_calls,
                    finish_reason=whole.finish_reason,
                    usage=whole.usage,
                )
                return
            assembler = StreamAssembler(model=body["model"])
            done = False
            events = self._events(response)
            async for data in events:
                if data.strip() == "[DONE]":
                    done = True
                    break
                chunk = assembler.feed(decode_json(data))
                if chunk is not None:
                    yield chunk
            if done:
                await _drain(events)
            yield assembler.finish(done_seen=done)

    async def _events(self, response: httpx.Response) -> AsyncIterator[str]:
        decoder = SSEDecoder()
        try:
            async for line in response.aiter_lines():
                data = decoder.feed(line)
                if data is not None:
                    yield data
        except httpx.TimeoutException:
            raise InferenceTimeout("the model stopped sending in time") from None
        except httpx.HTTPError:
            # Part of the answer is already out: the caller must not replay it blindly.
            raise InferenceUnavailable("the connection to the model broke mid-answer") from None
        tail = decoder.flush()
        if tail is not None:
            yield tail

    @asynccontextmanager
    async def _open(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Send with bounded retries; yield a 2xx response whose body is still unread."""
        request = self._client.build_request(method, path, json=body)
        response = await self._send(request)
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the upstream: always safe to try again.
                if attempt < self._max_retries:
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt, None))
                    continue
                raise InferenceUnavailable(
                    f"cannot reach the model endpoint ({type(exc).__name__})", retryable=True
                ) from None
            except httpx.TimeoutException:
                raise InferenceTimeout("the model did not answer in time", retryable=True) from None
            except httpx.HTTPError as exc:
                raise InferenceUnavailable(
                    f"the model endpoint failed ({type(exc).__name__})", retryable=True
                ) from None
            if response.status_code in _RETRY_STATUSES and attempt < self._max_retries:
                attempt += 1
                retry_after = response.headers.get("retry-after")
                await response.aclose()  # unread: the body is not consumed before retrying
                await asyncio.sleep(_backoff(attempt, retry_after))
                continue
            if response.is_success:
                return response
            raise await self._status_error(response)

    async def _status_error(self, response: httpx.Response) -> InferenceError:
        status = response.status_code
        try:
            detail = self._scrub(error_message(await self._read(response, _MAX_ERROR_BYTES)))
        except InferenceError:
            detail = ""
        finally:
            await response.aclose()
        suffix = f": {detail}" if detail else ""
        if status == 429 or status >= 500:
            return InferenceUnavailable(f"model endpoint answered {status}{suffix}", retryable=True)
        if status == 408:
            return InferenceTimeout(f"model endpoint answered 408{suffix}", retryable=True)
        if status >= 400:
            return InferenceRejected(f"model endpoint refused the request ({status}){suffix}")
        return InferenceBadResponse(f"model endpoint answered {status}")

    async def _read(self, response: httpx.Response, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            async for part in response.aiter_bytes():
                size += len(part)
                if size > limit:
                    raise InferenceBadResponse("upstream answer is too large")
                parts.append(part)
        except httpx.TimeoutException:
            raise InferenceTimeout("the model did not answer in time", retryable=True) from None
        except httpx.HTTPError as exc:
            raise InferenceUnavailable(
                f"the connection to the model broke ({type(exc).__name__})"
            ) from None
        return b"".join(parts)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


async def _drain(events: AsyncIterator[str]) -> None:
    """Read what follows [DONE], normally just the end of the body, so the connection goes
    back to the pool: a response closed unread takes its connection with it, and every turn
    would pay for a new one (a TLS handshake with a remote upstream). Bounded in events and
    time; past either, or on any error, the connection is closed as before."""
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            count = 0
            async for _ in events:
                count += 1
                if count > _DRAIN_EVENTS:
                    return
    except (TimeoutError, InferenceError):
        return


def _backoff(attempt: int, retry_after: str | None) -> float:
    delay = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0 ** (attempt - 1))
    delay *= random.uniform(0.5, 1.5)  # noqa: S311 - jitter spreads retries; not a secret
    if retry_after is not None and retry_after.isdigit():
        # Honour the upstream's hint, but a chat turn cannot wait minutes for it.
        delay = max(delay, min(float(retry_after), _BACKOFF_CAP_S))
    return delay
