"""BM25 queries per second on the shared corpus: bm25s (runs) and rank-bm25 (reference)."""
from __future__ import annotations

import pytest

#: Test questions taken from the start of each shared dataset (60 in all).
QUESTIONS_PER_DATASET = 10
TOP_K = 5
#: rank-bm25 scores every passage in Python (~10 queries/s): fewer rounds.
ROUNDS = {"bm25s": 5, "rank_bm25": 2}
#: bm25s's first batched search compiles its numba kernel (about a second): not timed.
WARMUP = {"bm25s": 1, "rank_bm25": 0}


@pytest.fixture(scope="module")
def source(shared_data):
    from bench.data import resolve_source

    return resolve_source(str(shared_data))


@pytest.fixture(scope="module")
def queries(source) -> list[str]:
    """A fixed set of real questions: the first test questions of every dataset."""
    return [q.question for name in source.dataset_names()
            for q in source.questions(name, "test")[:QUESTIONS_PER_DATASET]]


@pytest.mark.parametrize("name", ["bm25s", "rank_bm25"])
def test_bm25_queries_per_second(benchmark, throughput, source, queries, model_cache, name):
    from retrievers import build_retriever

    corpus = source.corpus()
    retriever = build_retriever(name, corpus, model_cache / "indexes")
    hits = benchmark.pedantic(retriever.search, args=(queries, TOP_K), rounds=ROUNDS[name],
                              iterations=1, warmup_rounds=WARMUP[name])
    assert len(hits) == len(queries)
    throughput(f"BM25 {name}, top-{TOP_K} of {len(corpus):,} passages", len(queries),
               "queries/s")
