"""The learned detector: character and word n-grams, hashed, TF-IDF weighted, logistic regression.

Character n-grams carry what transfers across sources and languages: the morphology of
"ignor-", "instruct-", "anweisung", "précédentes", odd punctuation and adversarial suffixes.
Word n-grams add the phrases. Features are hashed, so no vocabulary is shipped: the model is
the hashing parameters (JSON), the IDF weights and the coefficients of the features seen in
training (a compressed ``.npz`` of plain arrays). Nothing is unpickled when it loads:
``numpy.load(allow_pickle=False)`` reads arrays only.

Training lives in ``scripts/train_safeguards.py``; this module is what both training and
the running service use to turn text into features, so the two can never drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# scipy and scikit-learn ship no type information (pyproject.toml has no override for them).
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.feature_extraction.text import HashingVectorizer  # type: ignore[import-untyped]

MODELS_DIR = Path(__file__).parent / "models"
PARAMS_FILE = "ngram.json"
WEIGHTS_FILE = "ngram.npz"
FORMAT = "obsigen-ngram-lr/1"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class NgramParams:
    """How text becomes features; stored beside the weights and checked on load."""

    char_ngram_min: int = 3
    char_ngram_max: int = 5
    char_features: int = 2**18
    word_ngram_min: int = 1
    word_ngram_max: int = 2
    word_features: int = 2**16
    max_chars: int = 4000

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NgramParams:
        return cls(**{key: int(value) for key, value in data.items()})


class Featuriser:
    """Hashed counts -> sublinear TF -> IDF -> L2, per analyser, concatenated."""

    def __init__(self, params: NgramParams) -> None:
        self.params = params
        self._char = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(params.char_ngram_min, params.char_ngram_max),
            n_features=params.char_features,
            alternate_sign=False,
            norm=None,
            lowercase=True,
            dtype=np.float32,
        )
        self._word = HashingVectorizer(
            analyzer="word",
            ngram_range=(params.word_ngram_min, params.word_ngram_max),
            n_features=params.word_features,
            alternate_sign=False,
            norm=None,
            lowercase=True,
            token_pattern=r"(?u)\b\w+\b",  # noqa: S106 - a regex, not a password
            dtype=np.float32,
        )

    @property
    def n_features(self) -> int:
        return self.params.char_features + self.params.word_features

    def counts(self, texts: list[str]) -> sparse.csr_matrix:
        """Sublinear term frequencies of both analysers, side by side (before IDF)."""
        # Long jailbreaks repeat themselves; the first few thousand characters carry the
        # template, and the cut bounds the cost per prompt.
        clipped = [text[: self.params.max_chars] for text in texts]
        char = self._char.transform(clipped)
        word = self._word.transform(clipped)
        both = sparse.hstack([char, word], format="csr", dtype=np.float32)
        both.data = np.log1p(both.data)
        return both

    def transform(self, texts: list[str], idf: npt.NDArray[np.float32]) -> sparse.csr_matrix:
        return self.transform_counts(self.counts(texts), idf)

    def transform_counts(
        self, tf: sparse.csr_matrix, idf: npt.NDArray[np.float32]
    ) -> sparse.csr_matrix:
        weighted = tf.multiply(idf.reshape(1, -1)).tocsr()
        # Each analyser is normalised on its own so neither drowns the other.
        split = self.params.char_features
        char = _l2_rows(weighted[:, :split])
        word = _l2_rows(weighted[:, split:])
        return sparse.hstack([char, word], format="csr", dtype=np.float32)


def _l2_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    scaled: sparse.csr_matrix = sparse.diags(1.0 / norms).dot(matrix).tocsr()
    return scaled


def idf_weights(tf: sparse.csr_matrix, min_df: int) -> npt.NDArray[np.float32]:
    """Smoothed IDF as in scikit-learn; features seen in fewer than ``min_df`` texts get 0."""
    n_docs = tf.shape[0]
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    idf = np.log((1 + n_docs) / (1 + df)) + 1.0
    idf[df < min_df] = 0.0
    weights: npt.NDArray[np.float32] = idf.astype(np.float32)
    return weights


@dataclass(frozen=True, slots=True)
class NgramModel:
    """A trained model: featuriser, IDF and two logistic heads (dense in memory).

    Head 0 says attack or benign; head 1, trained on attacks only, says jailbreak (>= 0.5)
    or injection, and names the category of what head 0 flags.
    """

    params: NgramParams
    idf: npt.NDArray[np.float32]
    coef: npt.NDArray[np.float32]  # (n_features, 2)
    intercept: npt.NDArray[np.float32]  # (2,)
    metadata: dict[str, Any]

    @property
    def featuriser(self) -> Featuriser:
        return _featuriser(self)

    def heads(self, texts: list[str]) -> FloatArray:
        """Per text: [P(attack), P(jailbreak | attack)]."""
        if not texts:
            return np.zeros((0, 2))
        features = self.featuriser.transform(texts, self.idf)
        logits = np.asarray(features @ self.coef, dtype=np.float64) + self.intercept
        probabilities: FloatArray = 1.0 / (1.0 + np.exp(-logits))
        return probabilities

    def score(self, texts: list[str]) -> FloatArray:
        """Probability of attack for each text."""
        scores: FloatArray = self.heads(texts)[:, 0] if texts else np.zeros(0)
        return scores

    # --- persistence: plain arrays and JSON, never pickle ------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        used = np.flatnonzero(np.any(self.coef != 0, axis=1) & (self.idf != 0)).astype(np.int32)
        np.savez_compressed(
            directory / WEIGHTS_FILE,
            index=used,
            idf=self.idf[used].astype(np.float16),
            coef=self.coef[used].astype(np.float16),
        )
        document = {
            "format": FORMAT,
            "params": self.params.to_json(),
            "intercept": [float(value) for value in self.intercept],
            "metadata": self.metadata,
        }
        (directory / PARAMS_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path = MODELS_DIR) -> NgramModel:
        document = json.loads((directory / PARAMS_FILE).read_text())
        if document.get("format") != FORMAT:
            raise ValueError(f"unknown model format {document.get('format')!r} in {directory}")
        params = NgramParams.from_json(document["params"])
        size = params.char_features + params.word_features
        with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as arrays:
            index = arrays["index"].astype(np.int64)
            if index.size and (index.min() < 0 or index.max() >= size):
                raise ValueError("model weights do not fit the declared feature space")
            stored = arrays["coef"].astype(np.float32)
            if stored.shape != (index.size, 2):
                raise ValueError("model weights must hold two heads")
            idf = np.zeros(size, dtype=np.float32)
            coef = np.zeros((size, 2), dtype=np.float32)
            idf[index] = arrays["idf"].astype(np.float32)
            coef[index] = stored
        return cls(
            params=params,
            idf=idf,
            coef=coef,
            intercept=np.asarray(document["intercept"], dtype=np.float32),
            metadata=dict(document.get("metadata", {})),
        )


_FEATURISERS: dict[NgramParams, Featuriser] = {}


def _featuriser(model: NgramModel) -> Featuriser:
    # The vectorisers are stateless; one per parameter set is shared by every model using it.
    featuriser = _FEATURISERS.get(model.params)
    if featuriser is None:
        featuriser = _FEATURISERS[model.params] = Featuriser(model.params)
    return featuriser


__all__ = [
    "MODELS_DIR",
    "Featuriser",
    "NgramModel",
    "NgramParams",
    "idf_weights",
]
