"""Held-out-by-source measurement on the shared data: a regression in the detector fails here.

The bars are the numbers measured when the shipped model was trained (docs/safeguards.md),
less a small margin. With CI=true the data file must be there; elsewhere the test skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from obsigen.config import SafeguardsSettings
from obsigen.safeguards.evaluation import (
    Example,
    evaluation_report,
    guess_language,
    load_examples,
    metrics,
    threshold_at_fpr,
)
from obsigen.safeguards.training import TrainConfig, cross_validate, folds

# ../shared beside the repository (as on the development machines and in CI), or named.
DATA = Path(
    os.environ.get("OBSIGEN_SAFEGUARDS_DATA")
    or Path(__file__).resolve().parents[3].parent / "shared/data/safeguards/train.jsonl"
)
CI = os.environ.get("CI", "").lower() == "true"

# Measured by scripts/train_safeguards.py (held out by source file, group 5-fold, at the
# shipped thresholds); see docs/safeguards.md. The run is seeded; the margins absorb float
# differences across platforms and small rule edits, not a real regression.
MEASURED_RECALL = {"overall": 0.5302, "injection": 0.3733, "jailbreak": 0.6795}
MEASURED_FPR = {"overall": 0.0198, "hard_negatives_max": 0.061}
RECALL_MARGIN = 0.03
FPR_MARGIN = 0.01


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    if not DATA.is_file():
        if CI:
            pytest.fail(f"{DATA} is required with CI=true but is missing")
        pytest.skip(f"{DATA} is not available")
    return load_examples(DATA)


def test_folds_never_split_a_source_or_a_bipia_document(examples: list[Example]) -> None:
    for train, test in folds(examples, "file"):
        train_groups = {examples[i].group("file") for i in train}
        test_groups = {examples[i].group("file") for i in test}
        assert not train_groups & test_groups
    bipia = [e for e in examples if e.repo == "microsoft/BIPIA"]
    assert {e.group("file") for e in bipia if e.label} <= {e.group("file") for e in bipia}


def test_held_out_recall_and_fpr_do_not_regress(examples: list[Example]) -> None:
    settings = SafeguardsSettings()
    held = cross_validate(examples, TrainConfig(), by="file")
    predicted = [
        detection.score >= (settings.indirect_threshold if e.indirect else settings.threshold)
        for e, detection in zip(examples, held.detections, strict=True)
    ]
    report = evaluation_report(examples, predicted)

    assert report["overall"]["recall"] >= MEASURED_RECALL["overall"] - RECALL_MARGIN
    assert report["overall"]["fpr"] <= MEASURED_FPR["overall"] + FPR_MARGIN
    for kind in ("injection", "jailbreak"):
        assert report["per_kind"][kind]["recall"] >= MEASURED_RECALL[kind] - RECALL_MARGIN
    hard = max(row["fpr"] for row in report["hard_negatives"].values())
    assert hard <= MEASURED_FPR["hard_negatives_max"] + FPR_MARGIN


def test_metrics_and_thresholds() -> None:
    result = metrics([1, 1, 0, 0, 0], [True, False, True, False, False])
    assert (result.tp, result.fn, result.fp, result.tn) == (1, 1, 1, 2)
    assert result.recall == 0.5
    assert result.fpr == pytest.approx(1 / 3, abs=1e-4)
    assert result.precision == 0.5

    benign = np.linspace(0, 1, 101).tolist()
    cut = threshold_at_fpr(benign, 0.02)
    assert sum(score >= cut for score in benign) <= 2


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("How do I reset my password?", "en"),
        ("Wie kann ich mein Passwort zurücksetzen?", "de"),
        ("Comment puis-je réinitialiser mon mot de passe ?", "fr"),
        ("¿Cómo puedo restablecer mi contraseña de la cuenta?", "es"),
        ("Come posso reimpostare la mia password per il conto?", "it"),
        ("Как мне сбросить пароль?", "ru"),
        ("パスワードをリセットするにはどうすればいいですか", "ja"),
    ],
)
def test_language_guess(text: str, lang: str) -> None:
    assert guess_language(text) == lang
