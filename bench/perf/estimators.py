"""Estimator and rescoring cost, over statistics read back from the output cache.

The statistics are computed once through the same cached stores as
``arbench run`` (so a cache filled by a run with the same settings is reused
and nothing is recomputed), then the timed part runs with the store offline:
any model call would raise :class:`~bench.stores.CacheMissError`.
``benchmarks/test_bench_rescore.py`` builds its context with :func:`stat_context`.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import estimators as estimator_registry
from bench.cache import Cache
from bench.calculators.background import background_embeddings
from bench.data.schema import Question
from bench.estimation import score_split_pair
from bench.evaluation import SplitAnswers, evaluate_dataset
from bench.judges import build_judge
from bench.ledger import Cost
from bench.metrics import need_retrieval_labels, score_answers
from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
from bench.prompts import DEFAULT_TEMPLATE, TEMPLATES
from bench.statistics import StatContext, compute_statistics
from bench.stores import GenerationStore, RetrievalStore
from estimators.base import GREEDY, BackgroundEmbeddings, Estimator, StatBundle
from retrievers.base import Corpus


def stat_context(model, tokenizer, fingerprint: str, cache: Cache, greedy: GreedyConfig,
                 sampling: SamplingConfig, seed: int = 0, judge: str | Callable[[], Any] = "minilm",
                 dtype: str = "bfloat16", template: str = DEFAULT_TEMPLATE,
                 batch_size: int = 16, progress: bool = False) -> StatContext:
    """A statistics context over ``cache`` with the store keys of ``arbench run``.

    ``judge`` is a judge spec (built on first use, as runs do) or a factory;
    ``progress`` shows a bar while missing statistics are computed.
    """
    store = GenerationStore(cache, f"{fingerprint}|{dtype}",
                            lambda: HFBackend(model, tokenizer, fingerprint, batch_size),
                            batch_size, progress=progress)
    if isinstance(judge, str):
        spec = judge
        judge = functools.cache(lambda: build_judge(spec, backend_factory=lambda: store.backend,
                                                    model_fingerprint=fingerprint))
    return StatContext(store, TEMPLATES[template], greedy, sampling, seed, judge)


@dataclass
class Split:
    """Train and test questions with their statistics and the train need-retrieval labels."""

    train: list[Question]
    test: list[Question]
    train_bundles: list[StatBundle]
    test_bundles: list[StatBundle]
    labels: np.ndarray
    costs: list[Cost]

    @property
    def size(self) -> int:
        return len(self.train) + len(self.test)


def statistics(ctx: StatContext, train: list[Question], test: list[Question],
               estimators: Sequence[Estimator], desc: str) -> Split:
    """Every statistic ``estimators`` read (plus greedy), from the cache or computed into it."""
    needed = {GREEDY} | {stat for e in estimators for stat in e.requires}
    bundles, costs = compute_statistics(train + test, needed, ctx, desc)
    train_bundles = bundles[:len(train)]
    labels = need_retrieval_labels(score_answers(
        [b[GREEDY].text for b in train_bundles], [list(q.answers) for q in train])["in_accuracy"])
    return Split(train, test, train_bundles, bundles[len(train):], labels, costs[GREEDY])


def background(ctx: StatContext, corpus: Corpus, split: Split, passages: int,
               seed: int) -> BackgroundEmbeddings:
    """Relative Mahalanobis's background embeddings (computed or read before any timing)."""
    return background_embeddings(ctx.store, corpus, split.train_bundles[0][GREEDY].layers,
                                 passages, seed)


def suite_seconds(estimators: Sequence[Estimator], split: Split,
                  background_embeddings_: BackgroundEmbeddings, rounds: int, seed: int = 0,
                  dev_fraction: float = 0.2) -> dict[str, float]:
    """Best-of-``rounds`` seconds per estimator to score train and test from ``split``.

    Trained estimators include their 5-fold cross-fitting on train, the fit on
    all of train and test scoring, as in a run (fitted states are not saved).
    """
    seconds = {}
    for estimator in estimators:
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            score_split_pair(estimator, split.train_bundles, split.labels, split.test_bundles,
                             seed=seed, dev_fraction=dev_fraction,
                             background=lambda: background_embeddings_)
            best = min(best, time.perf_counter() - start)
        seconds[estimator.name] = best
    return seconds


@dataclass
class Rescoring:
    """What one rescoring pass reads: the closed-book statistics and the RAG answers."""

    ctx: StatContext
    retrieval: RetrievalStore
    corpus: Corpus
    train: list[Question]
    test: list[Question]
    top_k: int = 5

    def rescore(self, estimator_name: str, seed: int = 0, dev_fraction: float = 0.2) -> dict:
        """Cached statistics -> one estimator's scores -> the dataset's metrics rows."""
        estimator = estimator_registry.create(estimator_name)
        split = statistics(self.ctx, self.train, self.test, [estimator], "rescore")
        hits = self.retrieval.search([q.question for q in self.test], self.top_k)
        template = self.ctx.template
        prompts = [template.augmented(q.question, [self.corpus.get(h.passage_id) for h in hs])
                   for q, hs in zip(self.test, hits)]
        rag = self.ctx.store.greedy(prompts, self.ctx.greedy, desc="rescore rag")
        train_scores, test_scores = score_split_pair(
            estimator, split.train_bundles, split.labels, split.test_bundles, seed=seed,
            dev_fraction=dev_fraction)
        no_cost = [Cost() for _ in self.test]

        def answers(questions, bundles, scores, **extra) -> SplitAnswers:
            return SplitAnswers(golds=[q.answers for q in questions],
                                never=[b[GREEDY].text for b in bundles],
                                scores={estimator.name: scores}, **extra)

        test = answers(self.test, split.test_bundles, test_scores,
                       always=[g.text for g, _ in rag], never_cost=split.costs[len(self.train):],
                       always_cost=[c + Cost(retrieval_calls=1) for _, c in rag],
                       estimator_cost={estimator.name: no_cost})
        train = answers(self.train, split.train_bundles, train_scores)
        return evaluate_dataset(test, train, dev_fraction, seed)

    def seconds(self, estimator_name: str, rounds: int) -> float:
        """Best-of-``rounds`` seconds of :meth:`rescore`, with the model forbidden.

        The first, untimed pass fills whatever the cache lacks.
        """
        self.rescore(estimator_name)
        store = self.ctx.store
        offline, store.offline = store.offline, True
        try:
            best = float("inf")
            for _ in range(rounds):
                start = time.perf_counter()
                self.rescore(estimator_name)
                best = min(best, time.perf_counter() - start)
        finally:
            store.offline = offline
        return best
