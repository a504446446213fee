"""Retrievers: one interface over BM25 (bm25s, rank-bm25) and dense (faiss) search."""
from retrievers import bm25 as _bm25  # noqa: F401  (registers "bm25s", "rank_bm25")
from retrievers import dense as _dense  # noqa: F401  (registers "dense")
from retrievers.base import (
    RETRIEVERS,
    Corpus,
    CorpusError,
    Hit,
    Passage,
    Retriever,
    build_retriever,
    load_corpus_jsonl,
    register_retriever,
)

__all__ = ["RETRIEVERS", "Corpus", "CorpusError", "Hit", "Passage", "Retriever",
           "build_retriever", "load_corpus_jsonl", "register_retriever"]
