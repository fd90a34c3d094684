"""Suite ``detector``: the injection/jailbreak detector's quality and its cost per prompt.

Quality is not measured again here: it comes from ``safeguards/models/evaluation.json``, written
when the shipped model was trained (held-out sources, thresholds at a 2 % false-positive rate;
docs/safeguards.md). Latency is measured fresh on this machine: the shipped detector (rules and
n-gram model) scores a fixed random sample of the rows of ``../shared/data/safeguards/
train.jsonl`` one at a time, as a turn calls it, each row in its own channel (user prompt, or
indirect text for the rows that are documents). Without that file the suite reports quality
only.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.load import summarise
from bench.targets import REPO

SUITE = "detector"
EVALUATION = REPO / "src" / "obsigen" / "safeguards" / "models" / "evaluation.json"
DATA = REPO.parent / "shared" / "data" / "safeguards" / "train.jsonl"
SAMPLE_SEED = 20261126
FULL_SAMPLE = 600
QUICK_SAMPLE = 100
WARMUP = 20

QUALITY_KEYS = ("precision", "recall", "fpr", "f1", "n", "positives", "negatives")


def _quality(block: dict[str, Any]) -> dict[str, Any]:
    combined = block.get("combined", {})
    return {
        "auc_combined": block.get("auc_combined"),
        "auc_model_only": block.get("auc_model_only"),
        "overall": {k: combined.get("overall", {}).get(k) for k in QUALITY_KEYS},
        "per_kind": {
            kind: {k: stats.get(k) for k in QUALITY_KEYS}
            for kind, stats in combined.get("per_kind", {}).items()
        },
        "rules_only_overall": {
            k: block.get("rules_only", {}).get("overall", {}).get(k) for k in QUALITY_KEYS
        },
        "model_only_overall": {
            k: block.get("model_only", {}).get("overall", {}).get(k) for k in QUALITY_KEYS
        },
    }


def quality_from_evaluation(path: Path = EVALUATION) -> dict[str, Any]:
    evaluation: dict[str, Any] = json.loads(path.read_text())
    return {
        "source": str(path.relative_to(REPO)),
        "data": evaluation.get("data", {}),
        "max_fpr": evaluation.get("max_fpr"),
        "thresholds": evaluation.get("thresholds", {}),
        "held_out_by_file": _quality(evaluation.get("held_out_by_file", {})),
        "held_out_by_repo": _quality(evaluation.get("held_out_by_repo", {})),
        "latency_at_training": evaluation.get("latency", {}),
    }


def measure_latency(data: Path, sample: int) -> dict[str, Any]:
    from obsigen.safeguards.evaluation import load_examples
    from obsigen.safeguards.pipeline import shipped_detector

    started = time.perf_counter()
    detector = shipped_detector()
    detector.detect("Hello")  # parts of the model load on first use
    load_s = time.perf_counter() - started
    examples = load_examples(data)
    chosen = random.Random(SAMPLE_SEED).sample(examples, min(sample, len(examples)))
    for example in chosen[:WARMUP]:  # first calls build caches (regexes, hashing tables)
        detector.detect(example.text, indirect=example.indirect)
    timings: list[float] = []
    for example in chosen:
        t0 = time.perf_counter()
        detector.detect(example.text, indirect=example.indirect)
        timings.append((time.perf_counter() - t0) * 1000)
    lengths = [len(example.text) for example in chosen]
    return {
        "data": str(data),
        "rows_in_file": len(examples),
        "sample": len(chosen),
        "sample_seed": SAMPLE_SEED,
        "indirect_rows": sum(1 for example in chosen if example.indirect),
        "median_chars": statistics.median(lengths),
        "max_chars": max(lengths),
        "detector_load_s": round(load_s, 3),
        "latency_ms": summarise(timings),
        "prompts_per_s": round(len(timings) / (sum(timings) / 1000), 1),
    }


def run_suite(workdir: Path, quick: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"quality": quality_from_evaluation(), "unavailable": {}}
    if DATA.exists():
        body["latency"] = measure_latency(DATA, QUICK_SAMPLE if quick else FULL_SAMPLE)
        stats = body["latency"]["latency_ms"]
        print(f"  detector: p50 {stats['p50']:.2f} ms, p99 {stats['p99']:.2f} ms", flush=True)
    else:
        body["unavailable"]["latency"] = f"{DATA} is not present"
    return body


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def detector_markdown(doc: dict[str, Any]) -> str:
    quality = doc.get("quality", {})
    thresholds = quality.get("thresholds", {})
    lines = [
        "## Injection/jailbreak detector (rules + n-gram model)",
        "",
        f"Quality from `{quality.get('source')}` (trained on {quality.get('data', {}).get('rows')}"
        f" rows; thresholds user {thresholds.get('user')}, indirect {thresholds.get('indirect')},"
        f" chosen for at most {_pct(quality.get('max_fpr'))} false positives):",
        "",
        "| held out by | AUC | precision | recall | false-positive rate | F1 | "
        "recall injection | recall jailbreak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, key in (("source file", "held_out_by_file"), ("repository", "held_out_by_repo")):
        block = quality.get(key, {})
        overall, kinds = block.get("overall", {}), block.get("per_kind", {})
        lines.append(
            f"| {label} | {block.get('auc_combined')} | {_pct(overall.get('precision'))} | "
            f"{_pct(overall.get('recall'))} | {_pct(overall.get('fpr'))} | "
            f"{overall.get('f1')} | {_pct(kinds.get('injection', {}).get('recall'))} | "
            f"{_pct(kinds.get('jailbreak', {}).get('recall'))} |"
        )
    latency = doc.get("latency")
    if latency:
        stats = latency["latency_ms"]
        at_training = quality.get("latency_at_training", {})
        lines += [
            "",
            f"Latency here, one prompt at a time: p50 {stats['p50']:.2f} ms, p99 "
            f"{stats['p99']:.2f} ms, mean {stats['mean']:.2f} ms, {latency['prompts_per_s']} "
            f"prompts/s ({latency['sample']} random rows of the data set, median "
            f"{latency['median_chars']:.0f} characters, {latency['indirect_rows']} scored as "
            "indirect text; loading the detector and its first call took "
            f"{latency['detector_load_s']} s). At training time: p50 "
            f"{at_training.get('p50_ms')} ms, p99 {at_training.get('p99_ms')} ms.",
        ]
    for name, reason in doc.get("unavailable", {}).items():
        lines.append(f"**{name} was not measured:** {reason}")
    return "\n".join(lines)
