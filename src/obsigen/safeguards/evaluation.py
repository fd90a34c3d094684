"""Measuring the detector: labelled data, held-out groups, metrics by language, kind and source.

The shared data set (``../shared/data/safeguards/train.jsonl``) has one JSON object a line:
``{"text", "label" (1 attack, 0 benign), "kind" (benign|injection|jailbreak), "source"}``.
Only ``text`` and ``label`` are required here, so any labelled JSONL can be evaluated.

Held-out parts are chosen by *source*, never by row: rows of one source share templates and
topics, and a split by row rewards memorising them. Two groupings are offered: by source file
(the part of ``source`` before any ``+``, so a BIPIA clean document and the injected copies
of it stay together) and, stricter, by repository.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

GroupBy = Literal["file", "repo"]

# Text the user did not type: scored as indirect input (retrieved documents, tool output).
INDIRECT_REPOS = ("microsoft/BIPIA",)

# The benign rows built to look like attacks (see shared/data/safeguards/README.md).
HARD_NEGATIVES: dict[str, Callable[[str], bool]] = {
    "wildguard-adversarial-benign": lambda source: source.startswith("SaFoLab-WISC/InjecGuard"),
    "xstest-safe": lambda source: source.startswith("paul-rottger/exaggerated-safety"),
    "purplellama-system-prompts": lambda source: source.endswith("#test_case_prompt"),
    "purplellama-false-refusal": lambda source: "mitre_frr" in source,
    "role-play-act-as": lambda source: source.startswith("f/awesome-chatgpt-prompts"),
    "bipia-clean-documents": lambda source: source.startswith("microsoft/BIPIA"),
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int
    kind: str
    source: str
    lang: str

    @property
    def repo(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def indirect(self) -> bool:
        return self.repo in INDIRECT_REPOS

    def group(self, by: GroupBy) -> str:
        return self.repo if by == "repo" else self.source.split("+", 1)[0]

    @property
    def hard_negative(self) -> str | None:
        if self.label:
            return None
        for name, matches in HARD_NEGATIVES.items():
            if matches(self.source):
                return name
        return None


def load_examples(path: Path) -> list[Example]:
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                # ValueError, not TypeError: bad input data, reported to the user as such.
                raise ValueError(f"{path}:{number}: each line needs a string 'text'")  # noqa: TRY004
            label = int(row.get("label", 0))
            if label not in (0, 1):
                raise ValueError(f"{path}:{number}: label must be 0 or 1")
            kind = str(row.get("kind") or ("attack" if label else "benign"))
            text = row["text"]
            lang = str(row.get("lang") or guess_language(text))
            examples.append(Example(text, label, kind, str(row.get("source", "")), lang))
    return examples


# --- language ---------------------------------------------------------------------------------
# A small script-and-stopword guesser, enough to break results down by language; the data set
# has no language field. Non-Latin scripts are told by their letters, Latin-script languages by
# their most frequent words.

_SCRIPTS = (
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("zh", re.compile(r"[\u4e00-\u9fff]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("bn", re.compile(r"[\u0980-\u09ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
)
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words("the and is are you to of in that it for what how this with can i my"),
    "de": _words("der die das und ist ich nicht sie zu ein eine mit wie was für auf den mein"),
    "fr": _words("le la les et est je vous tu de des un une que qui pour pas dans ce mon comment"),
    "es": _words("el la los las y es que de en un una por para con no se su del qué mi cómo"),
    "it": _words("il lo la gli le e è che di un una per non con sono del della mi come posso"),
    "pt": _words("o a os as e é que de em um uma para não com do da você seu sua como"),
    "tr": _words("ve bir bu da de için ne mi ile çok ben sen olarak nasıl"),
    "vi": _words("của và là có không những được cho một người tôi bạn này"),
    "id": _words("yang dan di ini itu dengan untuk tidak dari saya anda ke apa"),
    "tl": _words("ang ng sa na ay mga ko mo at ka ako siya hindi po"),
}


def guess_language(text: str) -> str:
    sample = text[:2000]
    letters = [ch for ch in sample if ch.isalpha()]
    if not letters:
        return "und"
    for lang, script in _SCRIPTS:
        if len(script.findall(sample)) / len(letters) > 0.3:
            return lang
    words = re.findall(r"[^\W\d_]+", unicodedata.normalize("NFKC", sample).lower())
    counts = {lang: sum(word in stop for word in words) for lang, stop in _STOPWORDS.items()}
    lang, hits = max(counts.items(), key=lambda item: item[1])
    return lang if hits else "und"


# --- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metrics:
    n: int
    positives: int
    negatives: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    fpr: float | None
    f1: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def metrics(labels: Sequence[int], predicted: Sequence[bool]) -> Metrics:
    tp = sum(1 for y, p in zip(labels, predicted, strict=True) if y and p)
    fp = sum(1 for y, p in zip(labels, predicted, strict=True) if not y and p)
    fn = sum(1 for y, p in zip(labels, predicted, strict=True) if y and not p)
    tn = len(labels) - tp - fp - fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = None
    if precision is not None and recall is not None and precision + recall:
        f1 = round(2 * precision * recall / (precision + recall), 4)
    return Metrics(
        len(labels), tp + fn, fp + tn, tp, fp, fn, tn, precision, recall, _ratio(fp, fp + tn), f1
    )


def breakdown(
    examples: Sequence[Example], predicted: Sequence[bool], key: Callable[[Example], str | None]
) -> dict[str, Metrics]:
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        name = key(example)
        if name is not None:
            groups.setdefault(name, []).append(index)
    return {
        name: metrics([examples[i].label for i in rows], [predicted[i] for i in rows])
        for name, rows in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    }


def evaluation_report(
    examples: Sequence[Example], predicted: Sequence[bool], *, min_language_rows: int = 20
) -> dict[str, Any]:
    """Overall, per kind, per language, per repository and on the hard negatives."""
    lang_counts = Counter(example.lang for example in examples)
    return {
        "overall": metrics([e.label for e in examples], predicted).as_dict(),
        "per_kind": _dicts(breakdown(examples, predicted, lambda e: e.kind)),
        "per_language": _dicts(
            breakdown(
                examples,
                predicted,
                lambda e: e.lang if lang_counts[e.lang] >= min_language_rows else "other",
            )
        ),
        "per_repo": _dicts(breakdown(examples, predicted, lambda e: e.repo or "-")),
        "hard_negatives": _dicts(breakdown(examples, predicted, lambda e: e.hard_negative)),
    }


def _dicts(table: dict[str, Metrics]) -> dict[str, dict[str, Any]]:
    return {name: value.as_dict() for name, value in table.items()}


def percentiles(samples_ms: Iterable[float]) -> dict[str, float]:
    values = np.asarray(list(samples_ms), dtype=np.float64)
    if values.size == 0:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "mean_ms": round(float(values.mean()), 2),
    }


def threshold_at_fpr(benign_scores: Sequence[float], max_fpr: float) -> float:
    """The lowest threshold that keeps the share of benign scores at or above it <= max_fpr."""
    scores = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        return 0.5
    allowed = int(np.floor(max_fpr * scores.size))
    # Flag strictly above the (allowed+1)-th highest benign score.
    cut = scores[min(allowed, scores.size - 1)]
    return float(np.nextafter(cut, np.inf))


__all__ = [
    "HARD_NEGATIVES",
    "Example",
    "GroupBy",
    "Metrics",
    "breakdown",
    "evaluation_report",
    "guess_language",
    "load_examples",
    "metrics",
    "percentiles",
    "threshold_at_fpr",
]
