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

import numpy as np
import torch

import estimators as estimator_registry
from bench.cache import Cache
from bench.config import RunConfig
from bench.data import resolve_source
from bench.data.schema import DataSource, Question
from bench.evaluation import SplitAnswers, evaluate_dataset
from bench.ledger import Cost
from bench.models.hf_backend import HFBackend
from bench.models.loading import load_model, resolve_model
from bench.prompts import TEMPLATES
from bench.report import console_table, write_results
from bench.statistics import StatContext, compute_statistics
from bench.stores import GenerationStore, RetrievalStore
from estimators.base import GREEDY, EstimatorOptions
from retrievers import build_retriever

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


def select_estimators(requested: list[str]) -> list[str]:
    if requested == ["all"]:
        return sorted(estimator_registry.ESTIMATORS)
    for name in requested:
        estimator_registry.create(name)  # fails loudly on an unknown name
    return list(requested)


def default_run_name(config: RunConfig) -> str:
    if config.hub:
        base = "hub"
    elif config.data_dir in (None, "demo"):
        base = "demo"
    else:
        base = Path(config.data_dir).resolve().name
    return base + (f"-limit{config.limit}" if config.limit else "")


def run(config: RunConfig) -> RunResult:
    """Execute a run end to end and write ``results/<run-name>/``."""
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    source = resolve_source(config.data_dir, hub=config.hub, corpus=config.corpus)
    datasets = select_datasets(source, config.datasets)
    names = select_estimators(config.estimators)
    options = EstimatorOptions(include_stop_token=config.include_stop_token)
    estimators = [estimator_registry.create(n, options) for n in names]
    template = TEMPLATES[config.template]
    cache = Cache(config.cache_dir)
    model_ref = resolve_model(config.model, config.cache_dir)

    def load_backend() -> HFBackend:
        log.info("loading model %s", model_ref.location)
        model, tokenizer = load_model(model_ref, config.cache_dir, config.dtype,
                                      config.trust_remote_code)
        return HFBackend(model, tokenizer, model_ref.fingerprint, config.batch_size)

    store = GenerationStore(cache, f"{model_ref.fingerprint}|{config.dtype}", load_backend,
                            config.batch_size, config.progress)
    corpus = source.corpus()
    retriever = build_retriever(config.retriever, corpus, Path(config.cache_dir) / "indexes")
    retrieval = RetrievalStore(cache, retriever)
    ctx = StatContext(store, template, config.greedy, config.sampling, config.seed)
    needed = {GREEDY} | {stat for e in estimators for stat in e.requires}

    results: dict[str, dict] = {}
    fingerprints: dict[str, dict] = {}
    for dataset in datasets:
        test = source.questions(dataset, "test")[:config.limit]
        train = source.questions(dataset, "train")[:config.limit]
        fingerprints[dataset] = {split: _questions_hash(qs) for split, qs in
                                 (("test", test), ("train", train))}
        bundles, stat_costs = compute_statistics(train + test, needed, ctx, desc=dataset)
        train_b, test_b = bundles[:len(train)], bundles[len(train):]
        hits = retrieval.search([q.question for q in test], config.top_k)
        rag_prompts = [template.augmented(q.question, [corpus.get(h.passage_id) for h in hs])
                       for q, hs in zip(test, hits)]
        rag = store.greedy(rag_prompts, config.greedy, desc=f"{dataset} rag")

        def split_answers(questions: list[Question], split_bundles, offset: int,
                          with_rag: bool) -> SplitAnswers:
            scores = {e.name: np.array([e.score(b) for b in split_bundles], dtype=np.float64)
                      for e in estimators}
            own = slice(offset, offset + len(questions))
            extra = {e.name: _extra_cost(e.requires, stat_costs, own) for e in estimators}
            return SplitAnswers(
                golds=[q.answers for q in questions],
                never=[b[GREEDY].text for b in split_bundles],
                always=[g.text for g, _ in rag] if with_rag else None,
                scores=scores,
                never_cost=stat_costs[GREEDY][own],
                estimator_cost=extra,
                always_cost=[c + Cost(retrieval_calls=1) for _, c in rag] if with_rag else None)

        results[dataset] = evaluate_dataset(
            split_answers(test, test_b, len(train), True),
            split_answers(train, train_b, 0, False),
            config.dev_fraction, config.seed)

    run_name = config.run_name or default_run_name(config)
    metrics = {"run": run_name, "datasets": results,
               "inputs": {"model": model_ref.fingerprint, "data": source.description,
                          "corpus_sha256": corpus.sha256, "questions": fingerprints,
                          "retriever": retriever.fingerprint(),
                          "config_sha256": _config_hash(config)}}
    run_info = {"wall_seconds": round(time.perf_counter() - started, 2),
                "lm_generate_calls": store.lm_calls,
                "retrieval_queries": retrieval.queries,
                "cache_hits": cache.hits, "cache_misses": cache.misses,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "torch_threads": torch.get_num_threads()}
    if store._backend is not None:
        run_info["lm_work"] = vars(store._backend.counter)
    directory = Path(config.results_dir) / run_name
    write_results(directory, metrics, config.to_dict(), run_info)
    cache.close()
    return RunResult(metrics, run_info, directory)


def _extra_cost(requires, stat_costs: dict, own: slice) -> list[Cost]:
    """Cost of an estimator's statistics beyond the closed-book pass every row pays."""
    extra = [Cost() for _ in range(own.stop - own.start)]
    for stat in requires:
        if stat is GREEDY:
            continue
        extra = [a + b for a, b in zip(extra, stat_costs[stat][own])]
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
