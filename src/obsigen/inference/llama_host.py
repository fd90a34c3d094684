"""Owns one in-process ``llama_cpp.Llama`` and runs every call to it off the event loop.

``Llama`` is not thread-safe, so all work goes to one dedicated worker thread under a lock.
A dedicated thread (not the default executor) means requests queued behind a long generation
wait in a queue instead of each pinning one of the loop's shared worker threads. Every job
gets a cancel flag, checked between tokens, so an abandoned request stops generating.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from obsigen.inference.errors import InferenceRejected, InferenceUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """The model plus what is needed to turn chat messages into its prompt."""

    llm: Any  # llama_cpp.Llama; typed loosely to keep llama_cpp an import-time optional
    formatter: Any  # llama_cpp.llama_chat_format.Jinja2ChatFormatter

    def prompt(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        """Token ids of the templated conversation, and the template's stop strings."""
        result = self.formatter(messages=messages)
        tokens: list[int] = self.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        return tokens, [s for s in stop if s]

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def room_for(self, prompt: list[int], wanted: int) -> int:
        """How many tokens may be generated after ``prompt`` within the context window."""
        room = int(self.llm.n_ctx()) - len(prompt)
        if room <= 0:
            raise InferenceRejected(
                f"the conversation ({len(prompt)} tokens) does not fit the local model's "
                f"context window ({self.llm.n_ctx()} tokens)"
            )
        return min(wanted, room)


def stopper(cancel: threading.Event) -> Any:
    """A llama stopping criterion that ends generation once ``cancel`` is set."""
    import llama_cpp  # only where the model is used: a heavy native import

    return llama_cpp.StoppingCriteriaList([lambda _tokens, _logits: cancel.is_set()])


class LlamaHost:
    def __init__(self, model_path: Path, *, n_ctx: int, n_threads: int | None) -> None:
        self.model_path = model_path
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="obsigen-llama")
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._active: set[threading.Event] = set()  # cancel flags of jobs not yet finished
        self._model: LoadedModel | None = None

    async def call(self, job: Callable[[LoadedModel, threading.Event], T]) -> T:
        """Run ``job`` on the worker thread; cancelling the caller stops the generation."""
        cancel = self._new_job()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._run, job, cancel)
        finally:
            self._end_job(cancel)

    async def iterate(
        self, job: Callable[[LoadedModel, threading.Event], Iterator[T]]
    ) -> AsyncIterator[T]:
        """Items of a generator that runs on the worker thread, handed over as they come."""
        cancel = self._new_job()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bool, T | BaseException | None]] = asyncio.Queue()

        def post(done: bool, item: T | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (done, item))
            except RuntimeError:
                cancel.set()  # the loop is gone: nobody is listening any more

        def produce(model: LoadedModel, stop: threading.Event) -> None:
            generator = job(model, stop)
            try:
                for item in generator:
                    if stop.is_set():
                        break
                    post(False, item)
            finally:
                close = getattr(generator, "close", None)
                if close is not None:
                    close()

        def run() -> None:
            try:
                self._run(produce, cancel)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
                post(True, exc)
            else:
                post(True, None)

        loop.run_in_executor(self._executor, run)
        try:
            while True:
                done, item = await queue.get()
                if done:
                    if isinstance(item, BaseException):
                        raise item
                    return
                yield cast("T", item)  # not done: the item is a T, not an error
        finally:
            self._end_job(cancel)

    async def load(self) -> None:
        await self.call(lambda _model, _cancel: None)

    async def aclose(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        for cancel in list(self._active):
            cancel.set()  # running generations stop at their next token
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._unload)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _new_job(self) -> threading.Event:
        if self._closing.is_set():
            raise InferenceUnavailable("the local model has been shut down")
        cancel = threading.Event()
        self._active.add(cancel)
        return cancel

    def _end_job(self, cancel: threading.Event) -> None:
        cancel.set()
        self._active.discard(cancel)

    def _run(self, job: Callable[[LoadedModel, threading.Event], T], cancel: threading.Event) -> T:
        if self._closing.is_set():
            raise InferenceUnavailable("the local model is shutting down")
        if cancel.is_set():
            raise InferenceUnavailable("the request was abandoned before it ran")
        with self._lock:
            result = job(self._ensure_loaded(), cancel)
        if self._closing.is_set():
            # Shutdown cut the generation short: what came out is not a whole answer.
            raise InferenceUnavailable("the local model shut down while answering")
        return result

    def _ensure_loaded(self) -> LoadedModel:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> LoadedModel:
        if not self.model_path.is_file():
            raise InferenceUnavailable(f"local model file not found: {self.model_path}")
        try:
            # A heavy native import, paid only once the model is used.
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise InferenceUnavailable(f"llama-cpp-python is not installed ({exc.name})") from None
        try:
            llm = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise InferenceUnavailable(f"the local model failed to load: {exc}") from None
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace")
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            log.warning("%s has no chat template; using ChatML", self.model_path.name)
            template = llama_cpp.llama_chat_format.CHATML_CHAT_TEMPLATE
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        return LoadedModel(llm=llm, formatter=formatter)

    def _unload(self) -> None:
        with self._lock:
            if self._model is not None:
                self._model.llm.close()
                self._model = None
