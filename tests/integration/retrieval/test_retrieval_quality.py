"""Retrieval quality on a small written corpus: eight documents on distinct topics and 26
questions, most of them paraphrased (no shared keywords), each with the file and section that
answers it. The top-3 hit rate is the share of questions whose answer is among the first three
results; the measured value is in docs/retrieval.md."""

from __future__ import annotations

import json

from tests.integration.retrieval.conftest import DATA_DIR, RetrievalPlatform

TOP_3_FLOOR = 0.9
TOP_1_FLOOR = 0.8


async def test_top_3_hit_rate_on_the_written_corpus(
    retrieval_platform: RetrievalPlatform,
) -> None:
    platform = retrieval_platform
    key = await platform.api_key()
    documents = sorted(DATA_DIR.glob("*.md"))
    assert len(documents) >= 8
    for path in documents:
        await platform.upload(key, path.name, path.read_bytes())
    await platform.retrieval.ingestion.join()
    questions = json.loads((DATA_DIR / "questions.json").read_text())
    assert len(questions) >= 20
    top1 = top3 = 0
    misses = []
    for item in questions:
        response = await platform.search(key, item["q"], top_k=3)
        assert response.status_code == 200, response.text
        found = [(r["file_name"], r["locator"]) for r in response.json()["results"]]
        expected = (item["file"], item["locator"])
        top1 += found[:1] == [expected]
        top3 += expected in found
        if expected not in found:
            misses.append((item["q"], found))
    rate1, rate3 = top1 / len(questions), top3 / len(questions)
    print(f"retrieval quality: top-1 {rate1:.3f}, top-3 {rate3:.3f} on {len(questions)} questions")
    assert rate3 >= TOP_3_FLOOR, misses
    assert rate1 >= TOP_1_FLOOR, misses
