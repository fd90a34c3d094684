"""One PNG per suite, ``bench/results/<suite>.png``, drawn from the suite's JSON.

matplotlib with the Agg backend: no display, and the same picture on every machine. Each
figure's title names the machine and the date, so a picture copied elsewhere still says where
its numbers come from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

Plotter = Callable[[dict[str, Any], Figure], None]
TARGET_LABELS = {"direct": "direct", "obsigen": "Obsigen", "litellm": "LiteLLM"}


def _bars(
    ax: Axes,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    ylabel: str,
    *,
    log: bool = False,
    title: str = "",
) -> None:
    """Grouped bars: one group per label, one bar per series; missing values are left out."""
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        xs = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        pairs = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if pairs:
            ax.bar([x for x, _ in pairs], [v for _, v in pairs], width, label=name)
    ax.set_xticks(range(len(groups)))
    long_labels = max(map(len, groups), default=0) > 10 or sum(map(len, groups)) > 36
    ax.set_xticklabels(
        groups, rotation=20 if long_labels else 0, ha="right" if long_labels else "center"
    )
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1 and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _get(mapping: dict[str, Any] | None, *keys: str) -> float | None:
    value: Any = mapping
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


# --- one function per suite -------------------------------------------------------------------


def _proxy_latency(doc: dict[str, Any], fig: Figure) -> None:
    results = doc.get("results", {})
    scenarios = list(results)
    targets = [t for t in TARGET_LABELS if any(t in results[s] for s in scenarios)]
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [3, 3, 1.4, 1.4]})
    for ax, quantile in ((axes[0], "p50"), (axes[1], "p99")):
        series = {
            TARGET_LABELS[t]: [_get(results[s].get(t), "latency_ms", quantile) for s in scenarios]
            for t in targets
        }
        _bars(ax, scenarios, series, "ms (log)", log=True, title=f"total latency {quantile}")
    rps = doc.get("max_rps_per_worker", {})
    memory = doc.get("memory_at_end", {})
    proxies = [t for t in targets if t != "direct"]  # the upstream is no proxy: not compared
    labels = [TARGET_LABELS[t] for t in proxies]
    _bars(
        axes[2],
        labels,
        {"rps": [_get(rps, t, "rps") for t in proxies]},
        "requests/s",
        title="max RPS per worker",
    )
    _bars(
        axes[3],
        labels,
        {"MiB": [_get(memory, t, "total_peak_rss_mib") for t in proxies]},
        "MiB",
        title="peak RSS (VmHWM)",
    )


def _local_model(doc: dict[str, Any], fig: Figure) -> None:
    results = doc.get("results", {})
    _bars(
        fig.subplots(),
        list(results),
        {"tokens/s": [_get(r, "tokens_per_s") for r in results.values()]},
        "tokens/s",
        title="SmolLM2-135M, greedy",
    )


def _sandbox(doc: dict[str, Any], fig: Figure) -> None:
    labels, p50, p99, rate = [], [], [], []
    for backend, modes in doc.get("results", {}).items():
        for mode, res in modes.items():
            labels.append(f"{backend} {mode}")
            p50.append(_get(res, "sequential_ms", "p50"))
            p99.append(_get(res, "sequential_ms", "p99"))
            rate.append(_get(res, "concurrent", "runs_per_s"))
    left, right = fig.subplots(1, 2)
    _bars(left, labels, {"p50": p50, "p99": p99}, "ms", title="print(1) via the API")
    _bars(right, labels, {"runs/s at c4": rate}, "runs/s", title="sustained")


def _detector(doc: dict[str, Any], fig: Figure) -> None:
    quality = doc.get("quality", {})
    left, right = fig.subplots(1, 2)
    metrics = ("precision", "recall", "fpr", "f1")
    series = {
        f"held out by {label}": [_get(quality, key, "overall", metric) for metric in metrics]
        for label, key in (("file", "held_out_by_file"), ("repository", "held_out_by_repo"))
    }
    _bars(left, list(metrics), series, "fraction", title="quality (evaluation.json)")
    latency = doc.get("latency", {}).get("latency_ms", {})
    at_training = quality.get("latency_at_training", {})
    quantiles = ("p50", "p90", "p99")
    _bars(
        right,
        list(quantiles),
        {
            "this run": [_get(latency, q) for q in quantiles],
            "at training": [_get(at_training, f"{q}_ms") for q in quantiles],
        },
        "ms per prompt",
        title="latency",
    )


def _ratelimit(doc: dict[str, Any], fig: Figure) -> None:
    results = doc.get("results", {})
    left, right = fig.subplots(1, 2)
    rates = ("memory_decisions_per_s", "redis_decisions_per_s_1_in_flight",
             "redis_decisions_per_s_32_in_flight")  # fmt: skip
    _bars(
        left,
        ["memory", "Redis, 1 in flight", "Redis, 32 in flight"],
        {"decisions/s": [_get(results, k) for k in rates]},
        "decisions/s (log)",
        log=True,
        title="3-scope decisions per second",
    )
    ops = ("memory_decide_3_scopes", "redis_decide_3_scopes", "redis_budget_reserve_and_settle")
    _bars(
        right,
        ["memory decide", "Redis decide", "Redis reserve+settle"],
        {q: [_get(results, k, f"{q}_us") for k in ops] for q in ("median", "p99")},
        "µs (log)",
        log=True,
        title="one operation",
    )


def _audit_chain(doc: dict[str, Any], fig: Figure) -> None:
    backends = [b for b in ("sqlite", "mariadb") if b in doc]
    keys = ("sequential_events_per_s", "concurrent_events_per_s", "verify_events_per_s")
    _bars(
        fig.subplots(),
        ["sequential append", "concurrent append", "verify"],
        {b: [_get(doc, b, k) for k in keys] for b in backends},
        "events/s",
        title="audit chain throughput",
    )


def _audit_turn(doc: dict[str, Any], fig: Figure) -> None:
    variants = doc.get("variants", {})
    _bars(
        fig.subplots(),
        list(variants),
        {q: [_get(v, f"{q}_ms") for v in variants.values()] for q in ("p50", "p99")},
        "ms per turn",
        title="chat turn, in-process, by audit sinks",
    )


def _upload(doc: dict[str, Any], fig: Figure) -> None:
    variants = {"upload only": doc.get("scenarios", {})}
    if "with_in_process_indexing" in doc:
        variants["+ indexing in-process"] = doc["with_in_process_indexing"].get("scenarios", {})
    names = list(doc.get("scenarios", {}))
    left, right = fig.subplots(1, 2)
    _bars(
        left,
        names,
        {v: [_get(s, n, "peak_rss_mib") for n in names] for v, s in variants.items()},
        "MiB",
        title="server peak RSS during the upload",
    )
    _bars(
        right,
        names,
        {v: [_get(s, n, "mb_per_s") for n in names] for v, s in variants.items()},
        "MB/s",
        title="upload rate",
    )


def _keys(doc: dict[str, Any], fig: Figure) -> None:
    providers = doc.get("providers", {})
    ops = ["sign ES256", "verify ES256", "sign RS256", "verify RS256", "wrap", "unwrap"]
    _bars(
        fig.subplots(),
        ops,
        {name: [_get(m, op, "median_us") for op in ops] for name, m in providers.items()},
        "median µs (log)",
        log=True,
        title="key operations by provider",
    )


def _operations(title: str) -> Plotter:
    def plot(doc: dict[str, Any], fig: Figure) -> None:
        ops = doc.get("operations", {})
        _bars(
            fig.subplots(),
            list(ops),
            {q: [_get(o, f"{q}_us") for o in ops.values()] for q in ("median", "p99")},
            "µs",
            title=title,
        )

    return plot


def _ingest(doc: dict[str, Any], fig: Figure) -> None:
    left, right = fig.subplots(1, 2)
    _bars(
        left,
        ["ingest", "embed"],
        {"chunks/s": [_get(doc, "ingest", "chunks_per_s"), _get(doc, "embed", "chunks_per_s")]},
        "chunks/s",
        title="ingestion",
    )
    _bars(
        right,
        ["median", "p99"],
        {"search": [_get(doc, "search", "median_us"), _get(doc, "search", "p99_us")]},
        "µs (log)",
        log=True,
        title="retrieval search",
    )


def _tenant_keys(doc: dict[str, Any], fig: Figure) -> None:
    results = doc.get("results", {})
    rates = {k: v for k, v in results.items() if "median_mb_s" in v}
    _bars(
        fig.subplots(),
        [k.replace("object ", "") for k in rates],
        {"median MB/s": [_get(v, "median_mb_s") for v in rates.values()]},
        "MB/s",
        title="object encryption and stores (8 MiB objects)",
    )


def _soak(doc: dict[str, Any], fig: Figure) -> None:
    left, right = fig.subplots(1, 2)
    for name, samples in doc.get("rss_timeline", {}).items():
        if samples:
            left.plot([s[0] / 60 for s in samples], [s[1] for s in samples], label=name)
    left.set_xlabel("minutes")
    left.set_ylabel("RSS MiB")
    left.set_title("RSS of each process", fontsize=10)
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for kind, windows in doc.get("latency_timeline", {}).items():
        points = [(w[0] / 60, w[1]) for w in windows if w[1] is not None]
        if points:
            right.plot([p[0] for p in points], [p[1] for p in points], label=kind, marker=".")
    right.set_yscale("log")
    right.set_xlabel("minutes")
    right.set_ylabel(f"p50 ms per {doc.get('latency_window_s', 60):.0f} s (log)")
    right.set_title("latency by kind", fontsize=10)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    right.grid(alpha=0.3)


PLOTTERS: dict[str, Plotter] = {
    "proxy_latency": _proxy_latency,
    "local_model": _local_model,
    "sandbox": _sandbox,
    "detector": _detector,
    "ratelimit": _ratelimit,
    "audit_chain": _audit_chain,
    "audit_turn": _audit_turn,
    "upload": _upload,
    "keys": _keys,
    "tokens": _operations("access tokens (software keys)"),
    "auth_step": _operations("auth step per request"),
    "ingest": _ingest,
    "tenant_keys": _tenant_keys,
    "soak": _soak,
}


def _caption(doc: dict[str, Any]) -> str:
    machine = doc.get("machine", {})
    load = ", ".join(f"{x:.1f}" for x in machine.get("load_average_at_start", []))
    return (
        f"{doc.get('suite')} — {machine.get('date', '?')}, {machine.get('cpu_model', '?')}, "
        f"{machine.get('cores', '?')} cores, load {load}, "
        f"commit {str(machine.get('git_commit', ''))[:12] or 'none'}"
    )


def plot_suite(doc: dict[str, Any], directory: Path) -> Path | None:
    """Draw ``doc`` (a suite's JSON) to ``directory/<suite>.png``; None for an unknown suite."""
    plotter = PLOTTERS.get(str(doc.get("suite")))
    if plotter is None:
        return None
    wide = doc.get("suite") in ("proxy_latency", "keys", "soak", "detector", "ratelimit")
    fig = plt.figure(figsize=(14 if wide else 9, 4.8), dpi=100)
    try:
        plotter(doc, fig)
        fig.suptitle(_caption(doc), fontsize=9)
        fig.tight_layout()
        path = directory / f"{doc['suite']}.png"
        # No software/date metadata: a re-drawn, unchanged result gives the same bytes.
        fig.savefig(path, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
