"""Cached, batched, resumable access to generations and retrieval results.

Each store computes only the items missing from the cache, in batches ordered
deterministically (prompt length, then key), and commits every finished batch
atomically; a killed run resumes with the same batches and the same results.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import asdict

from tqdm import tqdm

from bench.cache import Cache, Record, content_key
from bench.ledger import Cost
from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
from bench.models.outputs import Generation, SampleSet, canonical_json
from bench.prompts import Messages
from retrievers.base import Hit, Retriever

Prompt = Messages


class CacheMissError(ValueError):
    """A record needed by an offline (rescoring) run is not cached."""


class GenerationStore:
    """Greedy answers and sample sets keyed by (model, prompt, decoding parameters).

    Parameters
    ----------
    cache : Cache
    model_key : str
        Model fingerprint plus dtype.
    load_backend : callable
        Returns the :class:`HFBackend`; called only when something is missing,
        so a fully cached run never loads the model.
    """

    def __init__(self, cache: Cache, model_key: str, load_backend: Callable[[], HFBackend],
                 batch_size: int = 16, progress: bool = True, offline: bool = False) -> None:
        self.cache = cache
        #: Refuse to compute anything: every record must already be cached.
        self.offline = offline
        self.model_key = model_key
        self._load_backend = load_backend
        self._backend: HFBackend | None = None
        self.batch_size = batch_size
        self.progress = progress

    @property
    def backend(self) -> HFBackend:
        if self._backend is None:
            self._backend = self._load_backend()
        return self._backend

    @property
    def lm_calls(self) -> int:
        """Generate calls made by this process (0 when everything was cached)."""
        return 0 if self._backend is None else self._backend.counter.generate_calls

    @property
    def lm_work(self) -> dict | None:
        """The backend's counters, or None if the model was never loaded."""
        return None if self._backend is None else dict(vars(self._backend.counter))

    def _keys(self, kind: str, prompts: Sequence[Prompt], config, extra: dict) -> list[str]:
        return [content_key(kind, {"model": self.model_key, "messages": prompt,
                                   "config": asdict(config), **extra})
                for prompt in prompts]

    def greedy(self, prompts: Sequence[Prompt], config: GreedyConfig, desc: str
               ) -> list[tuple[Generation, Cost]]:
        """One greedy generation (and its cost) per prompt."""
        keys = self._keys("greedy", prompts, config, {})

        def compute(chunk: list[int]) -> list[Record]:
            texts = [self.backend.chat_prompt(prompts[i]) for i in chunk]
            gens = self.backend.greedy(texts, config)
            return [_generation_record(g, Cost(1, 1, g.prompt_tokens, g.n_tokens))
                    for g in gens]

        records = self._fill("greedy", keys, prompts, compute, self.batch_size, desc)
        return [(Generation.from_record(r.meta, r.arrays), Cost.from_dict(r.meta["cost"]))
                for r in records]

    def samples(self, prompts: Sequence[Prompt], config: SamplingConfig, seed: int, desc: str
                ) -> list[tuple[SampleSet, Cost]]:
        """``config.n`` samples per prompt from one shared prefill."""
        keys = self._keys("samples", prompts, config, {"seed": seed})
        seeds_from = [_prompt_id(p) for p in prompts]

        def compute(chunk: list[int]) -> list[Record]:
            texts = [self.backend.chat_prompt(prompts[i]) for i in chunk]
            sets = self.backend.sample(texts, [seeds_from[i] for i in chunk], config, seed)
            records = []
            for sample_set in sets:
                meta, arrays = sample_set.to_record()
                generated = sum(s.n_tokens for s in sample_set.samples)
                meta["cost"] = Cost(config.n, 1, sample_set.samples[0].prompt_tokens,
                                    generated).to_dict()
                records.append(Record(meta, arrays))
            return records

        per_batch = max(1, self.batch_size * 2 // max(config.n, 1))
        records = self._fill("samples", keys, prompts, compute, per_batch, desc)
        return [(SampleSet.from_record(r.meta, r.arrays), Cost.from_dict(r.meta["cost"]))
                for r in records]

    def cached(self, kind: str, identities: Sequence[dict], sizes: Sequence[int],
               compute: Callable[[list[int]], list[Record]], batch: int, desc: str
               ) -> list[Record]:
        """Records for ``identities`` (one per item), computing the missing ones.

        ``compute`` receives item indices (a batch, shortest ``sizes`` first)
        and returns one :class:`Record` per index whose ``meta["cost"]`` is a
        :class:`Cost` dict.
        """
        keys = [content_key(kind, {"model": self.model_key, **identity})
                for identity in identities]
        return self._fill(kind, keys, sizes, compute, batch, desc)

    def _fill(self, kind: str, keys: list[str], sizes: Sequence[int] | Sequence[Prompt],
              compute: Callable[[list[int]], list[Record]], batch: int, desc: str
              ) -> list[Record]:
        found = self.cache.get_many(keys)
        batches = missing_batches(keys, found, sizes, batch)
        missing = sum(len(chunk) for chunk in batches)
        if missing and self.offline:
            raise CacheMissError(
                f"{desc}: {missing} of {len(keys)} '{kind}' records are not in the cache "
                f"{self.cache.path}; rescoring makes no LM calls, so run `arbench run` with "
                "this configuration first")
        if missing:
            bar = tqdm(total=missing, desc=desc, unit="q", disable=not self.progress,
                       dynamic_ncols=True)
            for chunk in batches:
                found.update(self._compute_batch(kind, chunk, compute))
                bar.update(len(chunk))
            bar.close()
        return [found[k] for k in keys]

    def _compute_batch(self, kind: str, chunk: list[tuple[str, int]],
                       compute: Callable[[list[int]], list[Record]]) -> dict[str, Record]:
        """Compute one batch of (key, item index) pairs and commit it in one transaction."""
        started = time.perf_counter()
        records = compute([i for _, i in chunk])
        seconds = (time.perf_counter() - started) / len(chunk)
        new = {}
        for (key, _), record in zip(chunk, records):
            record.meta["cost"] = {**record.meta["cost"], "seconds": seconds}
            new[key] = record
        self.cache.put_many(kind, new)
        return new


def missing_batches(keys: Sequence[str], found: Container[str],
                    sizes: Sequence[int] | Sequence[Prompt], batch: int
                    ) -> list[list[tuple[str, int]]]:
    """The batches a fill computes: (key, item index) of each key not in ``found``.

    Distinct missing keys (a repeated key keeps its last index) ordered by size
    (an int, or a prompt's characters), then key, cut into ``batch``-sized
    chunks. The order depends only on the inputs, so a resumed or distributed
    fill (:mod:`bench.distributed`) forms the same batches.
    """
    order = [s if isinstance(s, int) else _prompt_chars(s) for s in sizes]
    missing = sorted({k: i for i, k in enumerate(keys) if k not in found}.items(),
                     key=lambda item: (order[item[1]], item[0]))
    return [missing[start:start + batch] for start in range(0, len(missing), batch)]


def _generation_record(generation: Generation, cost: Cost) -> Record:
    meta, arrays = generation.to_record()
    meta["cost"] = cost.to_dict()
    return Record(meta, arrays)


def _prompt_chars(prompt: Prompt) -> int:
    return sum(len(content) for _, content in prompt)


def _prompt_id(prompt: Prompt) -> str:
    return hashlib.sha256(canonical_json(prompt).encode()).hexdigest()


class RetrievalStore:
    """Top-k hits per query, cached under (retriever fingerprint, query, k)."""

    def __init__(self, cache: Cache, retriever: Retriever) -> None:
        self.cache = cache
        self.retriever = retriever
        self.queries = 0

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        fingerprint = self.retriever.fingerprint()
        keys = [content_key("retrieval", {"retriever": fingerprint, "query": q, "k": k})
                for q in queries]
        found = self.cache.get_many(keys)
        todo = sorted({key: q for key, q in zip(keys, queries) if key not in found}.items())
        if todo:
            results = self.retriever.search([q for _, q in todo], k)
            self.queries += len(todo)
            new = {key: Record({"ids": [h.passage_id for h in hits],
                                "scores": [h.score for h in hits]})
                   for (key, _), hits in zip(todo, results)}
            self.cache.put_many("retrieval", new)
            found.update(new)
        return [[Hit(pid, score) for pid, score in zip(found[k_].meta["ids"],
                                                       found[k_].meta["scores"])]
                for k_ in keys]
