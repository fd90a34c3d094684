"""Hybrid search over the chunks a caller may read: embeddings and BM25, fused by rank.

Permission first: the candidate chunks are selected in SQL by tenant AND by the files access
rule (:func:`obsigen.files.access.readable_file_ids`: the caller's own, ready files), and only
from files whose ingestion finished. Nothing outside that set is ever scored, so no ranking
bug can surface a colleague's or another tenant's text.

Then two rankings over the candidates: cosine similarity of the query's embedding (meaning,
paraphrases) and Okapi BM25 over the chunk text (names, codes, exact words the embedding
blurs). They are fused by reciprocal rank (RRF, k=60), which needs no score calibration
between the two. The scoring is in-process over at most ``MAX_CANDIDATES`` chunks per caller,
which suits the embedded deployment (docs/retrieval.md says where the limit is).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.authz.principal import Principal
from obsigen.db.files_models import StoredFile
from obsigen.db.retrieval_models import DocumentChunk, FileIngestion
from obsigen.errors import InvalidInput
from obsigen.files.access import readable_file_ids
from obsigen.retrieval.embeddings import Embedder, Vectors, from_bytes
from obsigen.tenantkeys.bodies import cipher_of

MAX_QUERY_CHARS = 2000
MAX_TOP_K = 20
MAX_CANDIDATES = 50_000
RRF_K = 60
BM25_K1 = 1.2
BM25_B = 0.75
# Below this cosine a chunk with no query word in it is noise, not a weak match.
MIN_COSINE = 0.2
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    _WORD.findall(
        "a an and are as at be by can do does for from has have how i in is it its of on or "
        "our that the their this to was we what when where which who why will with you your"
    )
)


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    file_id: str
    file_name: str
    seq: int
    locator: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class _Candidates:
    rows: list[tuple[str, str, str, int, str, str]]
    vectors: Vectors


def terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def bm25_scores(query: Sequence[str], documents: Sequence[Sequence[str]]) -> np.ndarray:
    """Okapi BM25 of each document for the query terms (0 where none occurs)."""
    scores = np.zeros(len(documents), dtype=np.float64)
    if not documents or not query:
        return scores
    lengths = np.array([len(doc) for doc in documents], dtype=np.float64)
    average = float(lengths.mean()) or 1.0
    counts = [Counter(doc) for doc in documents]
    total = len(documents)
    for term in set(query):
        frequency = np.array([c.get(term, 0) for c in counts], dtype=np.float64)
        found = int(np.count_nonzero(frequency))
        if not found:
            continue
        idf = math.log(1.0 + (total - found + 0.5) / (found + 0.5))
        norm = frequency + BM25_K1 * (1 - BM25_B + BM25_B * lengths / average)
        scores += idf * frequency * (BM25_K1 + 1) / norm
    return scores


def fuse(cosine: np.ndarray, lexical: np.ndarray, top_k: int) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion; candidates that are neither similar nor matching drop out."""
    fused = np.zeros(len(cosine), dtype=np.float64)
    for position, index in enumerate(np.argsort(-cosine, kind="stable")):
        if cosine[index] >= MIN_COSINE:
            fused[index] += 1.0 / (RRF_K + position + 1)
    matching = np.flatnonzero(lexical > 0)
    for position, index in enumerate(matching[np.argsort(-lexical[matching], kind="stable")]):
        fused[index] += 1.0 / (RRF_K + position + 1)
    order = [int(i) for i in np.argsort(-fused, kind="stable") if fused[i] > 0]
    return [(index, float(fused[index])) for index in order[:top_k]]


class Searcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        embedder: Callable[[], Embedder],
    ) -> None:
        self._sessions = sessions
        self._embedder = embedder

    async def search(
        self,
        principal: Principal,
        query: str,
        top_k: int = 5,
        file_ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        query = query.strip()
        if not query:
            raise InvalidInput("the query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInput(f"the query is longer than {MAX_QUERY_CHARS} characters")
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}")
        async with self._sessions() as session:
            candidates = await _candidates(session, principal, file_ids)
        if not candidates.rows:
            return []
        embedder = await asyncio.to_thread(self._embedder)
        query_vector = (await embedder.aembed([query]))[0]
        ranked = await asyncio.to_thread(_rank, candidates, query_vector, query, top_k)
        return [
            Hit(
                chunk_id=row[0],
                file_id=row[1],
                file_name=row[2],
                seq=row[3],
                locator=row[4],
                text=row[5],
                score=round(score, 6),
            )
            for row, score in ((candidates.rows[i], s) for i, s in ranked)
        ]


def _rank(
    candidates: _Candidates, query_vector: np.ndarray, query: str, top_k: int
) -> list[tuple[int, float]]:
    cosine = candidates.vectors @ query_vector
    lexical = bm25_scores(terms(query), [terms(row[5]) for row in candidates.rows])
    return fuse(cosine, lexical, top_k)


async def _candidates(
    session: AsyncSession, principal: Principal, file_ids: Sequence[str] | None
) -> _Candidates:
    query = (
        select(
            DocumentChunk.id,
            DocumentChunk.file_id,
            StoredFile.name,
            DocumentChunk.seq,
            DocumentChunk.locator,
            DocumentChunk.text,
            DocumentChunk.embedding,
        )
        .join(StoredFile, StoredFile.id == DocumentChunk.file_id)
        .join(FileIngestion, FileIngestion.file_id == DocumentChunk.file_id)
        .where(
            DocumentChunk.tenant_id == principal.tenant_id,
            StoredFile.tenant_id == principal.tenant_id,
            DocumentChunk.file_id.in_(readable_file_ids(principal)),
            FileIngestion.status == "done",
        )
        .order_by(DocumentChunk.file_id, DocumentChunk.seq)
        .limit(MAX_CANDIDATES)
    )
    if file_ids is not None:
        query = query.where(DocumentChunk.file_id.in_(list(file_ids)))
    result = (await session.execute(query)).all()
    cipher = cipher_of(session)
    rows = [
        (
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5]
            if cipher is None
            else await cipher.decrypt_text(
                principal.tenant_id,
                r[5],
                table=DocumentChunk.__tablename__,
                column="text",
                row_id=r[0],
                session=session,
            ),
        )
        for r in result
    ]
    return _Candidates(rows, from_bytes([r[6] for r in result]))
