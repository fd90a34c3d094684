"""Training the n-gram model and measuring the whole detector on sources it never saw.

Used by ``scripts/train_safeguards.py`` (which writes the shipped model) and by the evaluation
test (which re-runs the held-out measurement so that a regression fails). Everything is seeded:
the same data gives the same folds, weights and numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

# scipy and scikit-learn ship no type information (pyproject.toml has no override for them).
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.linear_model import SGDClassifier  # type: ignore[import-untyped]
from sklearn.model_selection import StratifiedGroupKFold  # type: ignore[import-untyped]

from obsigen.safeguards.evaluation import Example, GroupBy
from obsigen.safeguards.ngram_model import Featuriser, NgramModel, NgramParams, idf_weights
from obsigen.safeguards.normalise import normalise
from obsigen.safeguards.pipeline import Detection, Detector

SEED = 20_240_601


@dataclass(frozen=True, slots=True)
class TrainConfig:
    params: NgramParams = field(default_factory=NgramParams)
    alpha: float = 1e-4
    min_df: int = 5
    epochs: int = 50
    seed: int = SEED
    # Each source counts by the square root of its size: a 971-row source does not teach
    # eleven times more than an 88-row one, so no single source's style becomes the label.
    source_weighting: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "params": self.params.to_json(),
            "alpha": self.alpha,
            "min_df": self.min_df,
            "epochs": self.epochs,
            "seed": self.seed,
            "source_weighting": self.source_weighting,
        }


def model_text(text: str) -> str:
    """What the model is trained on: the normalised text, as the detector will see it."""
    return normalise(text).text


def fit(
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    counts: sparse.csr_matrix | None = None,
    metadata: dict[str, Any] | None = None,
) -> NgramModel:
    featuriser = Featuriser(config.params)
    tf = counts if counts is not None else featuriser.counts([model_text(e.text) for e in examples])
    idf = idf_weights(tf, config.min_df)
    features = featuriser.transform_counts(tf, idf)
    labels = np.array([e.label for e in examples])
    weights = _sample_weights(examples) if config.source_weighting else np.ones(len(examples))

    attack = _sgd(config).fit(features, labels, sample_weight=weights)
    attacks = np.flatnonzero(labels == 1)
    jailbreak = np.array([examples[int(i)].kind == "jailbreak" for i in attacks], dtype=np.int64)
    kind = _sgd(config).fit(features[attacks], jailbreak, sample_weight=weights[attacks])

    coef = np.stack([attack.coef_[0], kind.coef_[0]], axis=1).astype(np.float32)
    intercept = np.array([attack.intercept_[0], kind.intercept_[0]], dtype=np.float32)
    coef[idf == 0] = 0.0
    return NgramModel(config.params, idf, coef, intercept, dict(metadata or {}))


def _sgd(config: TrainConfig) -> SGDClassifier:
    return SGDClassifier(
        loss="log_loss",
        alpha=config.alpha,
        class_weight="balanced",
        max_iter=config.epochs,
        tol=1e-4,
        random_state=config.seed,
    )


def _sample_weights(examples: Sequence[Example]) -> npt.NDArray[np.float64]:
    sizes = Counter(e.group("file") for e in examples)
    weights = np.array([1.0 / np.sqrt(sizes[e.group("file")]) for e in examples])
    normalised: npt.NDArray[np.float64] = weights / weights.mean()
    return normalised


def folds(
    examples: Sequence[Example], by: GroupBy, n_folds: int = 5, seed: int = SEED
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Held-out parts by source: group k-fold by file, or leave-one-repository-out."""
    groups = np.array([e.group(by) for e in examples])
    if by == "repo":
        return [
            (np.flatnonzero(groups != name), np.flatnonzero(groups == name))
            for name in sorted(set(groups.tolist()))
        ]
    labels = np.array([e.label for e in examples])
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(examples)), labels, groups))


@dataclass(frozen=True, slots=True)
class HeldOut:
    """One detection per example, each made by a model that never saw the example's source."""

    detections: list[Detection]
    model_only: npt.NDArray[np.float64]
    fold_of: npt.NDArray[np.int64]


def cross_validate(
    examples: Sequence[Example], config: TrainConfig, by: GroupBy = "file", n_folds: int = 5
) -> HeldOut:
    featuriser = Featuriser(config.params)
    counts = featuriser.counts([model_text(e.text) for e in examples])
    detections: list[Detection | None] = [None] * len(examples)
    model_only = np.zeros(len(examples))
    fold_of = np.zeros(len(examples), dtype=np.int64)
    for number, (train, test) in enumerate(folds(examples, by, n_folds, config.seed)):
        model = fit([examples[i] for i in train], config, counts=counts[train])
        detector = Detector(model)
        for indirect in (False, True):
            chosen = [i for i in test if examples[i].indirect == indirect]
            found = detector.detect_many([examples[i].text for i in chosen], indirect=indirect)
            for i, detection in zip(chosen, found, strict=True):
                detections[i] = detection
        model_only[test] = model.score([model_text(examples[i].text) for i in test])
        fold_of[test] = number
    assert all(d is not None for d in detections)
    return HeldOut([d for d in detections if d is not None], model_only, fold_of)


__all__ = ["SEED", "HeldOut", "TrainConfig", "cross_validate", "fit", "folds", "model_text"]
