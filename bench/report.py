"""Result files: one JSON per suite, and SUMMARY.md built from every suite's latest JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.sandbox import sandbox_markdown
from bench.targets import REPO

RESULTS = REPO / "bench" / "results"
SUMMARY = RESULTS / "SUMMARY.md"
TARGETS = ("direct", "obsigen", "litellm")


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
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{suite}.json"
    document = {"suite": suite, "machine": machine, **body}
    path.write_text(json.dumps(document, indent=2) + "\n")
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


RENDERERS = {
    "proxy_latency": latency_markdown,
    "local_model": local_model_markdown,
    "sandbox": sandbox_markdown,
}


def _header(machines: list[dict[str, Any]]) -> list[str]:
    lines = ["# Obsigen benchmarks", ""]
    unique = {json.dumps(m, sort_keys=True): m for m in machines}.values()
    for machine in unique:
        commit = machine["git_commit"][:12] or "none"
        dirty = " (dirty)" if machine["git_dirty"] else ""
        load = ", ".join(f"{x:.2f}" for x in machine["load_average_at_start"])
        lines.append(
            f"- {machine['date']}: {machine['cpu_model']}, {machine['cores']} cores, "
            f"Python {machine['python']}, commit {commit}{dirty}, load average at start {load}"
        )
    lines += [
        "",
        "The machine is shared and noisy: compare the ratios and the CPU per request, "
        "not absolute numbers across runs.",
    ]
    return lines


def write_summary() -> str:
    """SUMMARY.md from the latest JSON of every suite; returns its text."""
    docs = []
    for suite in RENDERERS:
        path = RESULTS / f"{suite}.json"
        if path.exists():
            docs.append(json.loads(path.read_text()))
    sections = [RENDERERS[doc["suite"]](doc) for doc in docs]
    header = "\n".join(_header([doc["machine"] for doc in docs]))
    text = "\n\n".join([header, *sections]) + "\n"
    SUMMARY.write_text(text)
    return text
