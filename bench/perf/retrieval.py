"""BM25 queries per second: bm25s (what runs use) and rank-bm25 (the reference)."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from bench.data.schema import DataSource
from bench.perf.figures import BenchReport
from retrievers import build_retriever
from retrievers.base import Corpus, Retriever

SECTION = "Retrieval"
#: The two BM25 implementations, and whether the first batched search is untimed
#: (bm25s compiles its numba kernel on first use, about a second).
BM25 = {"bm25s": True, "rank_bm25": False}


def benchmark_queries(source: DataSource, per_dataset: int) -> list[str]:
    """A fixed set of real questions: the first test questions of every dataset."""
    return [q.question for name in source.dataset_names()
            for q in source.questions(name, "test")[:per_dataset]]


def time_search(retriever: Retriever, queries: Sequence[str], k: int, rounds: int,
                warmup: bool) -> float:
    """Best-of-``rounds`` seconds of one batched ``search`` over every query."""
    if warmup:
        retriever.search(list(queries), k)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        hits = retriever.search(list(queries), k)
        best = min(best, time.perf_counter() - start)
        if len(hits) != len(queries):
            raise RuntimeError(f"{retriever.name}: {len(hits)} results for {len(queries)} "
                               "queries")
    return best


def add_retrieval_figures(report: BenchReport, corpus: Corpus, queries: Sequence[str],
                          index_dir: str | Path, k: int, rounds: dict[str, int],
                          retrievers: dict[str, Retriever] | None = None) -> None:
    """Queries/s of each BM25 implementation (index build or load not timed).

    ``retrievers`` holds already-built ones to reuse (the bm25s index of the prompts).
    """
    report.methods[SECTION] = (
        f"{len(queries)} test questions (the first of every dataset) as one batched search, "
        f"top-{k} of {len(corpus):,} passages; best of the rounds, index build/load not timed, "
        "bm25s after one untimed search (numba compilation)")
    for name, warmup in BM25.items():
        built = (retrievers or {}).get(name) or build_retriever(name, corpus, index_dir)
        seconds = time_search(built, queries, k, rounds[name], warmup)
        report.add(f"{name}_queries_per_s", len(queries) / seconds, "queries/s",
                   f"BM25 {name}", SECTION, f"best of {rounds[name]}")
