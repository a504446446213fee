"""Lexical retrievers: BM25 via bm25s (fast, cached) and rank-bm25 (reference).

Both backends share :class:`Tokenizer`, so any ranking difference between them
comes from the scoring formula alone (see :class:`RankBM25Retriever`).

Result conventions (shared with :mod:`retrievers.dense`):

* ``search`` returns ``min(k, len(corpus))`` hits per query, best first; equal
  scores are ordered by corpus position (lower index first).
* A query with no indexed term (empty, only stop words, or only unseen words)
  scores every passage 0, so it returns the first ``k`` passages in corpus
  order with score 0. The same filler appears after the matching passages when
  fewer than ``k`` passages share a term with the query.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrievers.base import Corpus, Hit, Passage, Retriever, register_retriever

log = logging.getLogger(__name__)

TOKEN_PATTERN = r"\w+"
TOKENIZER_VERSION = 1


def _english_stopwords() -> tuple[str, ...]:
    from bm25s.stopwords import STOPWORDS_EN  # Lucene/Elasticsearch English list

    return tuple(STOPWORDS_EN)


class Tokenizer:
    """Lower-case ``\\w+`` tokens (Unicode-aware) minus English stop words.

    Parameters
    ----------
    stopwords : sequence of str, optional
        Words to drop (compared after lower-casing). Defaults to bm25s's
        ``STOPWORDS_EN``, the 33-word Lucene/Elasticsearch English list.
    stemmer : str, optional
        A PyStemmer algorithm name (e.g. ``"english"``) applied after stop-word
        removal. ``None`` (default) disables stemming.
    """

    def __init__(self, stopwords: Sequence[str] | None = None, stemmer: str | None = None):
        self.stopwords = frozenset(_english_stopwords() if stopwords is None else stopwords)
        self.stemmer_name = stemmer
        self._pattern = re.compile(TOKEN_PATTERN)
        self._stem = None
        if stemmer is not None:
            try:
                import Stemmer  # PyStemmer
            except ImportError as exc:
                raise ImportError("stemming needs PyStemmer: pip install PyStemmer") from exc
            self._stem = Stemmer.Stemmer(stemmer).stemWords

    def __call__(self, text: str) -> list[str]:
        """Tokens of ``text`` in order, duplicates kept."""
        stop = self.stopwords
        tokens = [t for t in self._pattern.findall(text.lower()) if t not in stop]
        return self._stem(tokens) if self._stem is not None else tokens

    def spec(self) -> dict:
        """JSON-able description of everything that affects the token stream."""
        stop_digest = hashlib.sha256("\n".join(sorted(self.stopwords)).encode()).hexdigest()
        return {"version": TOKENIZER_VERSION, "pattern": TOKEN_PATTERN, "lowercase": True,
                "stopwords_sha256": stop_digest[:16], "stemmer": self.stemmer_name}


def index_text(passage: Passage) -> str:
    """Text a passage is indexed under: title, a space, then the body."""
    return f"{passage.title} {passage.text}"


def make_fingerprint(prefix: str, spec: dict) -> str:
    """``prefix`` plus 16 hex digits of a hash over ``spec`` (JSON, sorted keys)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return f"{prefix}-{hashlib.sha256(blob).hexdigest()[:16]}"


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``scores``, best first, ties by lower index.

    Runs in O(n + m log m) where m is the number of scores >= the k-th best.
    """
    n = int(scores.shape[0])
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= kth)
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))
    return cand[order[:k]]


def refine_candidates(indices: np.ndarray, scores: np.ndarray, k: int,
                      n_docs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact tie-broken top ``k`` from a backend's top-``m`` candidate list.

    ``indices``/``scores`` must be the ``m`` best documents in any order and
    with any tie resolution. When a tie could straddle the cut-off (the worst
    candidate scores as high as the k-th best) the candidates cannot decide
    which tied documents belong in the top ``k``; the caller must then rank
    the full score vector (returns ``None``).
    """
    m = len(indices)
    order = np.lexsort((indices, -scores))
    indices, scores = indices[order], scores[order]
    k = min(k, n_docs)
    if m < n_docs and (m <= k or not scores[m - 1] < scores[k - 1]):
        return None
    return indices[:k], scores[:k]


def make_hits(corpus: Corpus, indices: np.ndarray, scores: np.ndarray) -> list[Hit]:
    passages = corpus.passages
    return [Hit(passages[i].id, float(s)) for i, s in zip(indices.tolist(), scores.tolist())]


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@register_retriever("bm25s")
class BM25sRetriever(Retriever):
    """Lucene BM25 (Elasticsearch's formula) with bm25s and its numba backend.

    Score of document ``d`` for query terms ``q`` (each occurrence counts)::

        sum_t idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
        idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

    The index is built once from ``index_text`` of every passage and saved by
    bm25s (``.npy`` arrays written with ``allow_pickle=False`` plus JSON vocab and
    parameters) in ``index_dir / fingerprint()``; later constructions load it.

    Parameters
    ----------
    corpus : Corpus
        Passages to index; hit ids are ``corpus.passages[i].id``.
    index_dir : Path
        Parent folder of saved indexes.
    k1, b : float
        BM25 parameters (defaults: Elasticsearch's 1.2 and 0.75).
    stemmer : str, optional
        PyStemmer algorithm name; off by default (see :class:`Tokenizer`).
    n_threads : int
        Numba threads for batches of at least ``PARALLEL_MIN_BATCH`` queries.
        Default 1: numba's parallel kernel costs ~6 s of extra JIT compilation
        per process and was slower than the serial one on 2 cores (11k vs 14k
        queries/s); raise it on machines with many cores.

    Attributes
    ----------
    backend : str
        ``"numba"``, or ``"numpy"`` when numba cannot be imported (same results).
    built : bool
        Whether this construction built the index (False: loaded from disk).
    """

    name = "bm25s"
    PARALLEL_MIN_BATCH = 64  # smaller batches run single-threaded

    def __init__(self, corpus: Corpus, index_dir: Path, k1: float = 1.2, b: float = 0.75, *,
                 stemmer: str | None = None, n_threads: int = 1) -> None:
        super().__init__(corpus)
        import bm25s

        self._bm25s = bm25s
        self.k1, self.b = float(k1), float(b)
        self.tokenizer = Tokenizer(stemmer=stemmer)
        self.backend = "numba" if _numba_available() else "numpy"
        self.n_threads = max(1, int(n_threads))
        self.index_path = Path(index_dir) / self.fingerprint()
        self.built = False
        # bm25s.BM25 (untyped for mypy); None only until the build below.
        self.model: Any = (self._load() if (self.index_path / "meta.json").is_file()
                           else None)
        if self.model is None:
            self.model = self._build_and_save()
            self.built = True
        self._vocab: dict[str, int] = self.model.vocab_dict
        self._num_docs = int(self.model.scores["num_docs"])

    def fingerprint(self) -> str:
        spec = {"method": "bm25s-lucene", "k1": self.k1, "b": self.b,
                "tokenizer": self.tokenizer.spec(), "index_text": "title+space+text",
                "corpus_sha256": self.corpus.sha256}
        return make_fingerprint(f"bm25s-lucene-k1={self.k1:g}-b={self.b:g}", spec)

    # -- index -------------------------------------------------------------
    def _build(self):
        """Tokenize the corpus and build a bm25s index in memory."""
        vocab: dict[str, int] = {}
        doc_ids = []
        for passage in self.corpus.passages:
            tokens = self.tokenizer(index_text(passage))
            doc_ids.append([vocab.setdefault(t, len(vocab)) for t in tokens])
        # auto_compile=False: skip bm25s's per-instance JIT of the CSC builder and
        # scorer (seconds each); batched retrieval still runs the numba kernel.
        model = self._bm25s.BM25(k1=self.k1, b=self.b, method="lucene", backend=self.backend,
                                 auto_compile=False)
        # IDs in first-seen order: a deterministic vocabulary (bm25s's own goes through a set).
        model.index((doc_ids, vocab), show_progress=False)
        return model

    def _build_and_save(self):
        start = time.perf_counter()
        model = self._build()
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.index_path.name}.", dir=self.index_path.parent))
        try:
            model.save(tmp, show_progress=False)
            meta = {"fingerprint": self.fingerprint(), "num_docs": len(self.corpus),
                    "bm25s_version": getattr(self._bm25s, "__version__", "unknown"),
                    "corpus_source": self.corpus.source}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            publish_dir(tmp, self.index_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("built bm25s index of %d passages in %.1fs -> %s", len(self.corpus),
                 time.perf_counter() - start, self.index_path)
        return model

    def _load(self):
        meta = json.loads((self.index_path / "meta.json").read_text())
        if meta.get("num_docs") != len(self.corpus):
            log.warning("ignoring %s: %s docs, corpus has %d", self.index_path,
                        meta.get("num_docs"), len(self.corpus))
            return None
        return self._bm25s.BM25.load(self.index_path, allow_pickle=False, show_progress=False,
                                     override_params={"backend": self.backend,
                                                      "auto_compile": False})

    # -- search ------------------------------------------------------------
    def query_ids(self, query: str) -> list[int]:
        """Vocabulary ids of the query's indexed tokens (unseen tokens dropped)."""
        vocab = self._vocab
        return [vocab[t] for t in self.tokenizer(query) if t in vocab]

    def full_scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query`` (float32, corpus order)."""
        return self._score_ids(self.query_ids(query))

    def _score_ids(self, ids: Sequence[int]) -> np.ndarray:
        # Same float32 additions in the same order as bm25s's kernel (term by
        # term, each document at most once per term), hence identical scores.
        scores = self.model.scores
        data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
        out = np.zeros(self._num_docs, dtype=np.float32)
        for t in ids:
            lo, hi = indptr[t], indptr[t + 1]
            out[indices[lo:hi]] += data[lo:hi]
        return out

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        n = self._num_docs
        k = min(int(k), n)
        if k <= 0:
            return [[] for _ in queries]
        ids = [self.query_ids(q) for q in queries]
        live = [i for i, q in enumerate(ids) if q]
        results: list[list[Hit]] = [[] for _ in queries]
        zero = np.zeros(k, dtype=np.float32)
        for i, q in enumerate(ids):
            if not q:
                results[i] = make_hits(self.corpus, np.arange(k), zero)
        if not live:
            return results
        # Fetch a margin beyond k so most ties at the cut-off are settled without rescoring.
        fetch = min(n, k + max(k, 10))
        threads = self.n_threads if len(live) >= self.PARALLEL_MIN_BATCH else 1
        docs, scores = self.model.retrieve([ids[i] for i in live], k=fetch, show_progress=False,
                                           n_threads=threads)
        for row, i in enumerate(live):
            exact = refine_candidates(np.asarray(docs[row]), np.asarray(scores[row]), k, n)
            if exact is None:
                full = self._score_ids(ids[i])
                top = top_k_indices(full, k)
                exact = top, full[top]
            results[i] = make_hits(self.corpus, *exact)
        return results


def publish_dir(tmp: Path, final: Path) -> None:
    """Atomically move a finished index folder into place (first writer wins)."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "meta.json").is_file():
            raise
        log.info("%s was published concurrently; keeping the existing copy", final)


@register_retriever("rank_bm25")
class RankBM25Retriever(Retriever):
    """Reference BM25 with rank-bm25's ``BM25Okapi`` (no saved index).

    rank-bm25 scores ``sum_t idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))``
    with Robertson's IDF ``ln((N - df + 0.5) / (df + 0.5))``; terms in more than
    half of the documents would get a negative IDF and are floored to
    ``epsilon * mean(idf)`` (``epsilon = 0.25``). Lucene/bm25s instead use
    ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (always positive) and omit the
    constant ``(k1 + 1)`` factor, so the two rank alike but not identically:
    frequent terms weigh relatively less here. This class keeps rank-bm25 as
    is, as the reference implementation.

    The index is rebuilt in memory on each construction (about a second for the
    46k-passage corpus: tokenizing plus rank-bm25's term counting); nothing is
    written to ``index_dir``. Scoring is exhaustive Python, ~10 queries/s on
    the full corpus.

    Parameters
    ----------
    corpus : Corpus
        Passages to index.
    index_dir : Path
        Accepted for interface parity; unused.
    k1, b : float
        BM25 parameters (defaults: Elasticsearch's 1.2 and 0.75).
    epsilon : float
        rank-bm25's IDF floor factor (its default, 0.25).
    stemmer : str, optional
        PyStemmer algorithm name; off by default (see :class:`Tokenizer`).
    """

    name = "rank_bm25"

    def __init__(self, corpus: Corpus, index_dir: Path, k1: float = 1.2, b: float = 0.75, *,
                 epsilon: float = 0.25, stemmer: str | None = None) -> None:
        super().__init__(corpus)
        from rank_bm25 import BM25Okapi

        self.k1, self.b, self.epsilon = float(k1), float(b), float(epsilon)
        self.tokenizer = Tokenizer(stemmer=stemmer)
        tokens = [self.tokenizer(index_text(p)) for p in corpus.passages]
        self.model = BM25Okapi(tokens, k1=self.k1, b=self.b, epsilon=self.epsilon)

    def fingerprint(self) -> str:
        spec = {"method": "rank_bm25-okapi", "k1": self.k1, "b": self.b,
                "epsilon": self.epsilon, "tokenizer": self.tokenizer.spec(),
                "index_text": "title+space+text", "corpus_sha256": self.corpus.sha256}
        return make_fingerprint(f"rank_bm25-okapi-k1={self.k1:g}-b={self.b:g}", spec)

    def full_scores(self, query: str) -> np.ndarray:
        """rank-bm25 score of every passage for ``query`` (float64, corpus order)."""
        tokens = self.tokenizer(query)
        if not tokens:
            return np.zeros(len(self.corpus), dtype=np.float64)
        return np.asarray(self.model.get_scores(tokens), dtype=np.float64)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        results = []
        for query in queries:
            scores = self.full_scores(query)
            top = top_k_indices(scores, int(k))
            results.append(make_hits(self.corpus, top, scores[top]))
        return results
