"""Result files: one JSON per suite, and SUMMARY.md built from every suite's latest JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import sections
from bench.detector import detector_markdown
from bench.sandbox import sandbox_markdown
from bench.targets import REPO

RESULTS = REPO / "bench" / "results"
SUMMARY = RESULTS / "SUMMARY.md"
TARGETS = ("direct", "obsigen", "litellm")
LABELS = {"direct": "direct (fake upstream)", "obsigen": "Obsigen", "litellm": "LiteLLM"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),  # empty before the first commit
        "git_dirty": bool(_git("status", "--porcelain")),
    }


def write_suite(suite: str, machine: dict[str, Any], body: dict[str, Any]) -> Path:
    """``bench/results/<suite>.json`` and its plot ``<suite>.png``; returns the JSON's path."""
    from bench.plots import plot_suite  # matplotlib loads only when a result is written

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{suite}.json"
    document = {"suite": suite, "machine": machine, **body}
    path.write_text(json.dumps(document, indent=2) + "\n")
    plot_suite(document, RESULTS)
    return path


# --- markdown -------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _pair(stats: dict[str, float] | None) -> str:
    if not stats:
        return "–"
    return f"{_ms(stats.get('p50'))} / {_ms(stats.get('p99'))}"


def _ratio_pair(stats: dict[str, float] | None) -> str:
    if not stats:
        return "–"
    return " / ".join(f"{stats[q]:.2f}×" if q in stats else "–" for q in ("p50", "p99"))


def _latency_rows(doc: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    for scenario, by_target in doc.get("results", {}).items():
        derived = doc.get("derived", {}).get(scenario, {})
        for key in ("first_chunk_ms", "latency_ms"):
            if key not in derived:
                continue
            label = f"{scenario} {'first chunk' if key == 'first_chunk_ms' else 'total'}"
            cells = [_pair(by_target.get(t, {}).get(key)) for t in TARGETS]
            cells += [_pair(derived[key].get(f"{t}_added")) for t in ("obsigen", "litellm")]
            cells.append(_ratio_pair(derived[key].get("ratio_added_obsigen_over_litellm")))
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def _cost_rows(doc: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    for scenario, by_target in doc.get("results", {}).items():
        cells = []
        for target in TARGETS:
            res = by_target.get(target)
            if res is None:
                cells.append("–")
                continue
            errors = sum(res["errors"].values())
            note = f" ({errors} errors)" if errors else ""
            cells.append(
                f"{res['throughput_rps']:.0f} rps, {_ms(res['server_cpu_ms_per_request'])} ms"
                + note
            )
        rows.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return rows


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _saturation_rows(doc: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    best = doc.get("max_rps_per_worker", {})
    start, end = doc.get("memory_at_start", {}), doc.get("memory_at_end", {})
    for target in TARGETS:
        if target not in best and target not in end:
            continue
        rps = best.get(target)
        first, last = start.get(target, {}), end.get(target, {})
        rows.append(
            f"| {LABELS[target]} | "
            + (f"{rps['rps']:.0f} ({rps['scenario']})" if rps else "–")
            + f" | {last.get('processes', '–')} | {_mib(first.get('total_rss_mib'))} | "
            f"{_mib(last.get('total_rss_mib'))} | {_mib(last.get('total_peak_rss_mib'))} |"
        )
    return rows


def latency_markdown(doc: dict[str, Any]) -> str:
    params = doc.get("parameters", {})
    litellm = params.get("litellm", {})
    lines = [
        "## Proxy latency over a fake upstream (ms, p50 / p99)",
        "",
        "| scenario | direct | Obsigen | LiteLLM | Obsigen added | LiteLLM added "
        "| added Obsigen/LiteLLM |",
        "|---|---|---|---|---|---|---|",
        *_latency_rows(doc),
        "",
        "*added* is the target's percentile minus the direct percentile; the last column is "
        "Obsigen's added latency divided by LiteLLM's (below 1: Obsigen adds less).",
        "",
        "Throughput and server CPU per request (the proxy's own process; for *direct*, the "
        "upstream's):",
        "",
        "| scenario | direct | Obsigen | LiteLLM |",
        "|---|---|---|---|",
        *_cost_rows(doc),
        "",
        f"LiteLLM {litellm.get('version') or 'not run'} ({litellm.get('mode', '')}); "
        f"Obsigen: {params.get('obsigen', '')}. Rounds per scenario: {params.get('rounds')}.",
    ]
    saturation = _saturation_rows(doc)
    if saturation:
        lines[-1:-1] = [
            "Saturation and memory: the best non-streamed throughput of each target's one "
            "server process (closed-loop clients, so at c64 it never waits for work), and its "
            "resident memory from /proc (MiB, all its processes; peak = VmHWM over the suite):",
            "",
            "| target | max RPS per worker (scenario) | processes | RSS after start | RSS at end "
            "| peak RSS |",
            "|---|---|---|---|---|---|",
            *saturation,
            "",
        ]
    for name, reason in doc.get("unavailable", {}).items():
        lines.append(f"**{name} was not measured:** {reason.splitlines()[0]}")
    if doc.get("skipped_for_time"):
        lines.append(f"**Skipped for time:** {', '.join(doc['skipped_for_time'])}")
    return "\n".join(lines)


def local_model_markdown(doc: dict[str, Any]) -> str:
    lines = [
        "## Embedded model (SmolLM2-135M, llama-cpp-python), max_tokens "
        f"{doc.get('parameters', {}).get('max_tokens')}",
        "",
        "| runner | generations | prompt tokens | completion tokens | seconds | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, res in doc.get("results", {}).items():
        lines.append(
            f"| {name} | {res['generations']} | {res.get('prompt_tokens', '–')} | "
            f"{res['completion_tokens']} | {res['seconds']:.2f} | {res['tokens_per_s']:.1f} |"
        )
    if any("HTTP API" in name for name in doc.get("results", {})):
        lines += [
            "",
            "The HTTP API row counts every model call of a turn as its usage field reports "
            "them (with tools offered, a grammar-constrained tool decision over the tool "
            "preamble comes before the answer); its seconds are the whole request.",
        ]
    derived = doc.get("derived", {})
    labels = {"ratio_provider_over_raw": "in-process provider", "ratio_api_over_raw": "HTTP API"}
    ratios = [f"{labels[k]} {v:.2f}×" for k, v in derived.items() if k in labels]
    if ratios:
        lines += ["", "tokens/s relative to raw llama-cpp: " + ", ".join(ratios)]
    for name, reason in doc.get("unavailable", {}).items():
        lines.append(f"**{name} was not measured:** {reason.splitlines()[0]}")
    return "\n".join(lines)


# The order of the sections in SUMMARY.md.
RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "proxy_latency": latency_markdown,
    "local_model": local_model_markdown,
    "sandbox": sandbox_markdown,
    "detector": detector_markdown,
    "ratelimit": sections.ratelimit_markdown,
    "audit_chain": sections.audit_chain_markdown,
    "audit_turn": sections.audit_turn_markdown,
    "upload": sections.upload_markdown,
    "keys": sections.keys_markdown,
    "tokens": sections.tokens_markdown,
    "auth_step": sections.auth_step_markdown,
    "ingest": sections.ingest_markdown,
    "tenant_keys": sections.tenant_keys_markdown,
    "soak": sections.soak_markdown,
}


def machine_line(machine: dict[str, Any] | None) -> str:
    if not machine or "cpu_model" not in machine:
        return "*Machine not recorded (a result file from before machines were recorded).*"
    commit = machine.get("git_commit", "")[:12] or "none"
    dirty = " (dirty)" if machine.get("git_dirty") else ""
    load = ", ".join(f"{x:.2f}" for x in machine.get("load_average_at_start", []))
    return (
        f"*Ran {machine['date']} on {machine['cpu_model']}, {machine['cores']} cores, load "
        f"average at start {load}, Python {machine['python']}, commit {commit}{dirty}.*"
    )


def _section(doc: dict[str, Any]) -> str:
    """A suite's Markdown with its machine under the heading and its plot at the end."""
    heading, _, rest = RENDERERS[doc["suite"]](doc).partition("\n")
    text = "\n".join([heading, "", machine_line(doc.get("machine")), rest])
    if (RESULTS / f"{doc['suite']}.png").exists():
        text += f"\n\n![{doc['suite']}]({doc['suite']}.png)"
    return text


HEADER = [
    "# Obsigen benchmarks",
    "",
    "Written by `bench/report.py` from the latest `bench/results/<suite>.json` of every suite "
    "(`make bench`; the soak: `make soak`). Each section names the machine and the commit it "
    "ran on. These machines are shared with other work and noisy: compare ratios within one "
    "run and CPU per request, not absolute numbers across runs.",
]


def write_summary(replot: bool = False) -> str:
    """SUMMARY.md from the latest JSON of every suite; returns its text.

    ``replot`` draws every suite's PNG again (after a change to the plots), not only missing
    ones.
    """
    from bench.plots import plot_suite

    docs = []
    for suite in RENDERERS:
        path = RESULTS / f"{suite}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            doc.setdefault("suite", suite)
            if replot or not (RESULTS / f"{suite}.png").exists():
                plot_suite(doc, RESULTS)
            docs.append(doc)
    text = "\n\n".join(["\n".join(HEADER), *[_section(doc) for doc in docs]]) + "\n"
    SUMMARY.write_text(text)
    return text
