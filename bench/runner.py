"""``arbench run``: dataset → cached model outputs → estimators → gates → metrics → results.

Per dataset: the closed-book greedy answer and every declared statistic for
train and test, BM25 top-k passages and the augmented answer for test,
estimator scores, gates fit on train, rows scored on test.
"""
from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

import estimators as estimator_registry
from bench.cache import Cache
from bench.calculators.background import background_embeddings
from bench.config import RunConfig
from bench.data import resolve_source
from bench.data.schema import DataSource, Question
from bench.estimation import score_split_pair
from bench.evaluation import SplitAnswers, evaluate_dataset, statistics_ledger
from bench.judges import build_judge
from bench.ledger import Cost
from bench.metrics import need_retrieval_labels, score_answers
from bench.models.hf_backend import HFBackend
from bench.models.loading import ModelRef, load_model, resolve_model
from bench.models.outputs import Generation
from bench.pipelines import PIPELINES, Pipeline, PipelineContext, create_pipeline
from bench.pipelines.base import MAIN, VERIFIER
from bench.pipelines.driver import Services
from bench.pipelines.evaluate import evaluate_pipelines
from bench.prompts import TEMPLATES
from bench.report import console_table, write_results
from bench.statistics import StatContext, compute_statistics
from bench.stores import GenerationStore, RetrievalStore
from estimators.base import GREEDY, Estimator, EstimatorOptions, StatBundle, Statistic
from retrievers import Corpus, Retriever, build_retriever

log = logging.getLogger("arbench")


@dataclass
class RunResult:
    metrics: dict
    run_info: dict
    directory: Path


def select_datasets(source: DataSource, requested: list[str]) -> list[str]:
    available = source.dataset_names()
    if requested == ["all"]:
        return available
    unknown = [d for d in requested if d not in available]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; {source.description} offers {available}")
    return requested


#: Names that select a group of estimators.
ESTIMATOR_GROUPS = {
    "all": lambda cls: True,
    # The reference study's 27 estimators and its hybrid row.
    "study": lambda cls: cls.study_name is not None,
    # Everything computable from the greedy answer pass alone: no samples, no
    # extra forward passes, no judge, so it scales to every cached question.
    "single-pass": lambda cls: set(cls.requires) <= {GREEDY},
}


def select_estimators(requested: list[str]) -> list[str]:
    """Estimator names in order, groups (``all``, ``study``, ``single-pass``) expanded,
    duplicates dropped."""
    names: list[str] = []
    for item in requested:
        if item in ESTIMATOR_GROUPS:
            names += sorted(n for n, cls in estimator_registry.ESTIMATORS.items()
                            if ESTIMATOR_GROUPS[item](cls))
        else:
            estimator_registry.create(item)  # fails loudly on an unknown name
            names.append(item)
    return list(dict.fromkeys(names))


def default_run_name(config: RunConfig) -> str:
    if config.hub:
        base = "hub"
    elif config.data_dir in (None, "demo"):
        base = "demo"
    else:
        base = Path(config.data_dir).resolve().name
    return base + (f"-limit{config.limit}" if config.limit else "")


@dataclass
class RunSetup:
    """What a run builds before its first dataset: data, estimators, cache, stores."""

    config: RunConfig
    source: DataSource
    datasets: list[str]
    estimators: list[Estimator]
    cache: Cache
    model_ref: ModelRef
    store: GenerationStore
    corpus: Corpus
    retriever: Retriever
    retrieval: RetrievalStore
    judge: _lazy
    ctx: StatContext
    needed: set[Statistic]


def prepare(config: RunConfig, allow_model: bool = True,
            store_class: type[GenerationStore] = GenerationStore) -> RunSetup:
    """Resolve the config into a :class:`RunSetup` (the model is loaded on first use).

    ``store_class`` lets :mod:`bench.distributed` replay the run's model work
    through a store that computes only its shard.
    """
    source = resolve_source(config.data_dir, hub=config.hub, corpus=config.corpus)
    datasets = select_datasets(source, config.datasets)
    names = select_estimators(config.estimators)
    options = EstimatorOptions(include_stop_token=config.include_stop_token)
    estimators = [estimator_registry.create(n, options) for n in names]
    cache = Cache(config.cache_dir)
    model_ref = resolve_model(config.model, config.cache_dir)

    def load_backend() -> HFBackend:
        log.info("loading model %s", model_ref.location)
        model, tokenizer = load_model(model_ref, config.cache_dir, config.dtype,
                                      config.trust_remote_code)
        return HFBackend(model, tokenizer, model_ref.fingerprint, config.batch_size,
                         prefix_cache=config.prefix_cache)

    store = store_class(cache, store_key(model_ref.fingerprint, config), load_backend,
                        config.batch_size, config.progress, offline=not allow_model)
    corpus = source.corpus()
    retriever = build_retriever(config.retriever, corpus, Path(config.cache_dir) / "indexes")
    judge = _lazy(lambda: build_judge(config.judge, backend_factory=lambda: store.backend,
                                      model_fingerprint=model_ref.fingerprint))
    ctx = StatContext(store, TEMPLATES[config.template], config.greedy, config.sampling,
                      config.seed, judge)
    needed = {GREEDY} | {stat for e in estimators for stat in e.requires}
    return RunSetup(config, source, datasets, estimators, cache, model_ref, store, corpus,
                    retriever, RetrievalStore(cache, retriever), judge, ctx, needed)


class DatasetOutputs(NamedTuple):
    """One dataset's model outputs: statistics of train + test, the augmented test answers."""

    train: list[Question]
    test: list[Question]
    bundles: list[StatBundle]
    stat_costs: dict[Statistic, list[Cost]]
    rag: list[tuple[Generation, Cost]]


def model_outputs(setup: RunSetup, dataset: str) -> DatasetOutputs:
    """Every model output a run needs for ``dataset`` except pipelines and the background."""
    config, template = setup.config, setup.ctx.template
    test = setup.source.questions(dataset, "test")[:config.limit]
    train = setup.source.questions(dataset, "train")[:config.limit]
    bundles, stat_costs = compute_statistics(train + test, setup.needed, setup.ctx, desc=dataset)
    hits = setup.retrieval.search([q.question for q in test], config.top_k)
    rag_prompts = [template.augmented(q.question, [setup.corpus.get(h.passage_id) for h in hs])
                   for q, hs in zip(test, hits)]
    rag = setup.store.greedy(rag_prompts, config.greedy, desc=f"{dataset} rag")
    return DatasetOutputs(train, test, bundles, stat_costs, rag)


def run(config: RunConfig, allow_model: bool = True) -> RunResult:
    """Execute a run end to end and write ``results/<run-name>/``.

    With ``allow_model=False`` (``arbench rescore``) every model output must
    already be cached; a missing one raises :class:`CacheMissError`.
    """
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    setup = prepare(config, allow_model)
    source, datasets, estimators = setup.source, setup.datasets, setup.estimators
    cache, model_ref, store, corpus = setup.cache, setup.model_ref, setup.store, setup.corpus
    retriever, retrieval, judge = setup.retriever, setup.retrieval, setup.judge
    pipelines = build_pipelines(config)
    services = Services(
        stores={MAIN: store, **({VERIFIER: _verifier_store(config, cache, not allow_model)}
                                if any(VERIFIER in p.models for p in pipelines) else {})},
        retrieval=retrieval, corpus=corpus, judge=judge, seed=config.seed,
        progress=config.progress)
    directory = Path(config.results_dir) / (config.run_name or default_run_name(config))

    results: dict[str, dict] = {}
    fingerprints: dict[str, dict] = {}
    for dataset in datasets:
        train, test, bundles, stat_costs, rag = model_outputs(setup, dataset)
        fingerprints[dataset] = {"test": _questions_hash(test), "train": _questions_hash(train)}
        rag_costs = [cost + Cost(retrieval_calls=1) for _, cost in rag]
        train_bundles, test_bundles = bundles[:len(train)], bundles[len(train):]
        # Cached per passage, so every dataset after the first reads it back.
        background = _lazy(lambda bundles=train_bundles: background_embeddings(
            store, corpus, bundles[0][GREEDY].layers, config.background_passages, config.seed))
        labels = need_retrieval_labels(score_answers(
            [b[GREEDY].text for b in train_bundles], [list(q.answers) for q in train]
        )["in_accuracy"])
        scores = {e.name: score_split_pair(e, train_bundles, labels, test_bundles,
                                           seed=config.seed, dev_fraction=config.dev_fraction,
                                           background=background,
                                           state_dir=directory / "fitted" / dataset)
                  for e in estimators}
        train_part = _split_answers(train, train_bundles, estimators,
                                    {n: s[0] for n, s in scores.items()},
                                    _slice_costs(stat_costs, 0, len(train)))
        test_part = _split_answers(test, test_bundles, estimators,
                                   {n: s[1] for n, s in scores.items()},
                                   _slice_costs(stat_costs, len(train), len(bundles)),
                                   always=[g.text for g, _ in rag], always_cost=rag_costs)
        results[dataset] = evaluate_dataset(test_part, train_part, config.dev_fraction,
                                            config.seed)
        results[dataset]["statistics_ledger"] = statistics_ledger(
            {stat.name: costs[len(train):] for stat, costs in stat_costs.items()})
        if pipelines:
            need = need_retrieval_labels(score_answers(
                test_part.never, [list(q.answers) for q in test])["in_accuracy"])
            results[dataset]["rows"].update(evaluate_pipelines(
                pipelines, train, test, need, services, dataset, directory / "pipelines"))

    run_name = directory.name
    metrics = {"run": run_name, "datasets": results,
               "inputs": {"model": model_ref.fingerprint, "data": source.description,
                          "corpus_sha256": corpus.sha256, "questions": fingerprints,
                          "retriever": retriever.fingerprint(),
                          "judge": judge.built().fingerprint() if judge.was_built else None,
                          "verifier_model": (services.stores[VERIFIER].model_key
                                             if VERIFIER in services.stores else None),
                          "config_sha256": _config_hash(config)}}
    run_info = {"wall_seconds": round(time.perf_counter() - started, 2),
                "lm_generate_calls": sum(s.lm_calls for s in services.stores.values()),
                "retrieval_queries": retrieval.queries,
                "cache_hits": cache.hits, "cache_misses": cache.misses,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "torch_threads": torch.get_num_threads()}
    if store.lm_work is not None:
        run_info["lm_work"] = store.lm_work
    if VERIFIER in services.stores and services.stores[VERIFIER].lm_work is not None:
        run_info["verifier_lm_work"] = services.stores[VERIFIER].lm_work
    write_results(directory, metrics, config.to_dict(), run_info)
    cache.close()
    return RunResult(metrics, run_info, directory)


def select_pipelines(requested: list[str]) -> list[str]:
    """Pipeline names in order, ``all`` expanded, duplicates dropped; unknown names fail."""
    names: list[str] = []
    for item in requested:
        if item == "all":
            names += sorted(PIPELINES)
        elif item in PIPELINES:
            names.append(item)
        else:
            raise ValueError(f"unknown pipeline {item!r}; registered: {sorted(PIPELINES)}")
    return list(dict.fromkeys(names))


def build_pipelines(config: RunConfig) -> list[Pipeline]:
    """The selected pipelines with their setting overrides."""
    names = select_pipelines(config.pipelines)
    stray = sorted(set(config.pipeline_settings) - set(names))
    if stray:
        raise ValueError(f"settings given for pipeline(s) {stray} that are not selected")
    context = PipelineContext(TEMPLATES[config.template], config.greedy, config.top_k,
                              config.seed)
    return [create_pipeline(n, context, config.pipeline_settings.get(n)) for n in names]


def store_key(fingerprint: str, config: RunConfig) -> str:
    """Cache namespace of a model's outputs: fingerprint, dtype and prefix reuse.

    Prefix reuse rounds differently from a full prefill (in bf16 an answer can
    change), so its records never mix with full-prefill ones.
    """
    return f"{fingerprint}|{config.dtype}" + ("|prefix-cache" if config.prefix_cache else "")


def _verifier_store(config: RunConfig, cache: Cache, offline: bool) -> GenerationStore:
    """The cached store of the second model (cross-model consistency)."""
    ref = resolve_model(config.verifier_model, config.cache_dir)

    def load() -> HFBackend:
        log.info("loading verifier model %s", ref.location)
        model, tokenizer = load_model(ref, config.cache_dir, config.dtype,
                                      config.trust_remote_code)
        return HFBackend(model, tokenizer, ref.fingerprint, config.batch_size,
                         prefix_cache=config.prefix_cache)

    return GenerationStore(cache, store_key(ref.fingerprint, config), load, config.batch_size,
                           config.progress, offline=offline)


def _slice_costs(stat_costs: dict[Statistic, list[Cost]], start: int, stop: int
                 ) -> dict[Statistic, list[Cost]]:
    return {stat: costs[start:stop] for stat, costs in stat_costs.items()}


class _lazy:
    """A zero-argument factory that builds its value once, on first call."""

    def __init__(self, build):
        self._build = build
        self.was_built = False
        self._value = None

    def __call__(self):
        if not self.was_built:
            self._value = self._build()
            self.was_built = True
        return self._value

    built = __call__


def _split_answers(questions: list[Question], bundles: list[StatBundle],
                   estimators: list[Estimator], scores: dict[str, np.ndarray],
                   stat_costs: dict[Statistic, list[Cost]],
                   always: list[str] | None = None, always_cost: list[Cost] | None = None
                   ) -> SplitAnswers:
    """Answers, estimator scores and per-question costs of one split."""
    return SplitAnswers(
        golds=[q.answers for q in questions], never=[b[GREEDY].text for b in bundles],
        always=always, scores=scores, never_cost=stat_costs[GREEDY],
        estimator_cost={e.name: _extra_cost(e.requires, stat_costs, len(questions))
                        for e in estimators},
        always_cost=always_cost)


def _extra_cost(requires, stat_costs: dict[Statistic, list[Cost]], n: int) -> list[Cost]:
    """Cost of an estimator's statistics beyond the closed-book pass every row pays."""
    extra = [Cost() for _ in range(n)]
    for stat in requires:
        if stat is not GREEDY:
            extra = [a + b for a, b in zip(extra, stat_costs[stat])]
    return extra


def _questions_hash(questions: list[Question]) -> str:
    digest = hashlib.sha256()
    for q in questions:
        digest.update(json.dumps([q.id, q.question, list(q.answers)]).encode())
    return digest.hexdigest()


def _config_hash(config: RunConfig) -> str:
    return hashlib.sha256(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()


def print_table(result: RunResult) -> str:
    return console_table(result.metrics)
