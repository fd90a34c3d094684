"""Prometheus metrics: what an operator graphs and alerts on, never what a tenant said.

One registry per process: prometheus_client's default ``REGISTRY``, which also carries the
process and Python collectors. ``obsigen serve`` runs one process, so every replica (pod)
exposes its own numbers at ``GET /metrics`` (:mod:`obsigen.web.metrics`) and the scraper
aggregates across them (docs/metrics.md).

Label values come only from small closed sets the code defines: route templates, a list of
methods, status classes, provider and backend names, the server's own tool names, verdicts,
sink names from the operator's configuration. Never a tenant or user id, an e-mail, a file
name, or anything a client typed: the helpers below clamp every value that could come from
outside to such a set. Each instrumented seam costs one counter or histogram call.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from obsigen.assistant.hooks import GuardResult
    from obsigen.audit.interfaces import AuditSink
    from obsigen.sandbox.interfaces import RunRequest, RunResult

# A ``*_created`` series beside every counter child doubles the exposition for a number no
# dashboard of ours reads. Must run before the first metric below is made.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

# Chat turns and model calls take seconds to minutes; the default buckets stop at 10 s.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_INFERENCE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "obsigen_http_requests",
    "HTTP requests answered, by route template (never the raw path), method and status class.",
    ("route", "method", "status_class"),
)
HTTP_DURATION = Histogram(
    "obsigen_http_request_duration_seconds",
    "Time from the request to the end of the response body (a whole SSE stream included).",
    ("route", "method"),
    buckets=_HTTP_BUCKETS,
)
CHAT_TURNS = Counter(
    "obsigen_chat_turns",
    "Chat turns ended, by outcome (completed, blocked, output_blocked, upstream_timeout, "
    "upstream_error, cancelled, rejected, error).",
    ("outcome",),
)
INFERENCE_DURATION = Histogram(
    "obsigen_inference_call_duration_seconds",
    "Model calls that answered, by provider and call (complete, stream: until the last chunk).",
    ("provider", "call"),
    buckets=_INFERENCE_BUCKETS,
)
INFERENCE_ERRORS = Counter(
    "obsigen_inference_errors",
    "Model calls that failed, by provider and error (unavailable, timeout, bad_response, "
    "rejected, other).",
    ("provider", "error"),
)
TOOL_CALLS = Counter(
    "obsigen_tool_calls",
    "Tool-policy decisions on tool calls, by tool (a server tool's name, or 'client' for tools "
    "the API client runs) and decision (allow, deny, approval).",
    ("tool", "decision"),
)
SAFEGUARD_VERDICTS = Counter(
    "obsigen_safeguard_verdicts",
    "Content-safeguard verdicts, by verdict (allow, flagged: allowed in warn/log-only mode, "
    "block) and source kind (user, tool, retrieval, other).",
    ("verdict", "source"),
)
AUDIT_EMITS = Counter(
    "obsigen_audit_emits",
    "Audit events a sink accepted (for spooled sinks: written to the spool).",
    ("sink",),
)
AUDIT_EMIT_FAILURES = Counter(
    "obsigen_audit_emit_failures",
    "Audit events a sink refused or failed to keep (the recording call raised).",
    ("sink",),
)
RATE_LIMIT_REJECTIONS = Counter(
    "obsigen_ratelimit_rejections",
    "Requests refused with 429, by limit (request, token_budget) and binding scope (tenant, "
    "principal, endpoint, address; budget for token budgets).",
    ("limit", "scope"),
)
SANDBOX_RUNS = Counter(
    "obsigen_sandbox_runs",
    "Code-execution runs, by backend and outcome (ok, exit_nonzero, a limit that killed the "
    "run: timeout, memory, output_limit, cpu_time, file_size; or busy, unavailable, failed, "
    "rejected when no run happened).",
    ("backend", "outcome"),
)

# --- closed label sets -----------------------------------------------------------------------

UNMATCHED_ROUTE = "unmatched"
OTHER = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SOURCE_KINDS = frozenset({"user", "tool", "retrieval"})


def method_label(method: str) -> str:
    # A client may send any token as the method: only the standard ones become labels.
    return method if method in _METHODS else OTHER


def status_class(status: int) -> str:
    """The status class ("2xx" ... "5xx"); "none" when no response started."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "none"


def source_kind(source: str) -> str:
    """The kind of text judged ("tool:run_python" -> "tool"), never its origin in detail."""
    kind = source.partition(":")[0]
    return kind if kind in _SOURCE_KINDS else OTHER


def verdict_label(result: GuardResult) -> str:
    if result.verdict == "block":
        return "block"
    # warn and log-only modes let flagged text through but name what they saw.
    return "flagged" if result.categories else "allow"


def rate_limit_scope(key: str) -> str:
    """The scope a limiter key names (:meth:`obsigen.ratelimit.middleware.RateLimits.limits_for`
    builds them): ``{ip:A}:e:...`` address, ``{t:T}:tenant``, ``{t:T}:p:...`` principal,
    ``{t:T}:e:...`` endpoint. The key itself holds tenant and principal ids: never a label."""
    if key.startswith("{ip:"):
        return "address"
    rest = key.partition("}")[2]
    if rest == ":tenant":
        return "tenant"
    if rest.startswith(":p:"):
        return "principal"
    if rest.startswith(":e:"):
        return "endpoint"
    return OTHER


_INFERENCE_ERRORS = {
    "InferenceUnavailable": "unavailable",
    "InferenceTimeout": "timeout",
    "InferenceBadResponse": "bad_response",
    "InferenceRejected": "rejected",
}


def inference_error_label(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        label = _INFERENCE_ERRORS.get(cls.__name__)
        if label is not None:
            return label
    return OTHER


# --- seams -----------------------------------------------------------------------------------


async def emit_counted(sink: AuditSink, emitting: Awaitable[None], events: int = 1) -> None:
    """Awaits ``emitting`` (``sink`` keeping ``events`` events), counted as emits or as
    failures of that sink."""
    try:
        await emitting
    except Exception:  # a cancelled caller is not a failing sink
        AUDIT_EMIT_FAILURES.labels(sink.name).inc(events)
        raise
    AUDIT_EMITS.labels(sink.name).inc(events)


CheckFn = TypeVar("CheckFn", bound=Callable[..., Awaitable["GuardResult"]])
RunFn = TypeVar("RunFn", bound=Callable[..., Awaitable["RunResult"]])


def counts_verdicts(check: CheckFn) -> CheckFn:
    """Decorates a ContentGuard's ``check``: one count per verdict, by source kind."""

    @functools.wraps(check)
    async def counted(self: Any, text: str, *, source: str, **kwargs: Any) -> GuardResult:
        result = await check(self, text, source=source, **kwargs)
        SAFEGUARD_VERDICTS.labels(verdict_label(result), source_kind(source)).inc()
        return result

    return cast(CheckFn, counted)


_SANDBOX_REFUSALS = {
    "SandboxBusy": "busy",
    "SandboxUnavailable": "unavailable",
    "SandboxFailed": "failed",
    "SandboxInputError": "rejected",
    "InvalidInput": "rejected",
}


def sandbox_outcome(result: RunResult) -> str:
    if result.killed_reason is not None:
        return result.killed_reason
    return "ok" if result.exit_code == 0 else "exit_nonzero"


def sandbox_refusal(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        label = _SANDBOX_REFUSALS.get(cls.__name__)
        if label is not None:
            return label
    return "failed"


def counts_runs(run: RunFn) -> RunFn:
    """Decorates a SandboxRunner's ``run`` (``self.backend`` names the backend)."""

    @functools.wraps(run)
    async def counted(self: Any, request: RunRequest) -> RunResult:
        try:
            result = await run(self, request)
        except Exception as exc:
            SANDBOX_RUNS.labels(self.backend, sandbox_refusal(exc)).inc()
            raise
        SANDBOX_RUNS.labels(result.backend, sandbox_outcome(result)).inc()
        return result

    return cast(RunFn, counted)


# --- audit spools, read at scrape time -------------------------------------------------------


@runtime_checkable
class _SpoolStatusLike(Protocol):
    spooled_bytes: int
    max_bytes: int
    delivered_events: int
    failed_attempts: int
    dead_lettered: int
    refused_full: int


@runtime_checkable
class _SpooledLike(Protocol):
    name: str

    def status(self) -> _SpoolStatusLike: ...


class AuditSpools(Collector):
    """Spool depth and delivery counts of every spooled audit sink this process built.

    Read from each sink's in-memory status when scraped (no disk access). Sinks are held
    weakly: a closed and dropped recorder's sinks leave the exposition with it. Two live sinks
    with one name (tests build many platforms in one process) are summed.
    """

    def __init__(self) -> None:
        self._sinks: weakref.WeakSet[Any] = weakref.WeakSet()

    def watch(self, sinks: Iterable[object]) -> None:
        for sink in sinks:
            if isinstance(sink, _SpooledLike):
                self._sinks.add(sink)

    def describe(self) -> list[Metric]:
        # Registration would otherwise call collect() once to learn the names.
        return []

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, list[int]] = {}
        for sink in list(self._sinks):
            status = sink.status()
            row = totals.setdefault(str(sink.name), [0, 0, 0, 0, 0, 0])
            values = (
                status.spooled_bytes,
                status.max_bytes,
                status.delivered_events,
                status.failed_attempts,
                status.dead_lettered,
                status.refused_full,
            )
            for index, value in enumerate(values):
                row[index] += value
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily(
                "obsigen_audit_spool_bytes",
                "Bytes waiting in a spooled audit sink's disk spool (its depth).",
                labels=["sink"],
            ),
            GaugeMetricFamily(
                "obsigen_audit_spool_max_bytes",
                "The spool's capacity: events are refused once it is full.",
                labels=["sink"],
            ),
            CounterMetricFamily(
                "obsigen_audit_delivered_events",
                "Audit events delivered from the spool to the remote sink.",
                labels=["sink"],
            ),
            CounterMetricFamily(
                "obsigen_audit_delivery_failures",
                "Failed delivery attempts to the remote sink (each retried later).",
                labels=["sink"],
            ),
            CounterMetricFamily(
                "obsigen_audit_dead_lettered_events",
                "Audit events the remote sink refused permanently (kept in the dead-letter file).",
                labels=["sink"],
            ),
            CounterMetricFamily(
                "obsigen_audit_spool_refused_events",
                "Audit events refused because the spool was full.",
                labels=["sink"],
            ),
        ]
        for name, row in sorted(totals.items()):
            for family, value in zip(families, row, strict=True):
                family.add_metric([name], value)
        yield from families


AUDIT_SPOOLS = AuditSpools()
REGISTRY.register(AUDIT_SPOOLS)


def watch_audit_sinks(sinks: Iterable[object]) -> None:
    """Expose the spool depth of the spooled ones among ``sinks``."""
    AUDIT_SPOOLS.watch(sinks)
