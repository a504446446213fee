"""Rescoring: statistics read back from the output cache, and estimators scoring them.

The statistics of 24 demo questions are computed once with the default model
(bfloat16, as runs) into the persistent cache; the benchmarks then time what
``arbench rescore`` does per question: a fully cached statistics pass, and each
estimator's scoring.
"""
from __future__ import annotations

import pytest

QUESTIONS = 24
#: Scoring one bundle takes microseconds: each round scores the bundles this many times.
REPEATS = 20
ESTIMATORS = ("perplexity", "mean_token_entropy", "max_token_entropy", "lexical_similarity",
              "eigenscore", "p_true")


def _no_judge():
    raise RuntimeError("the benchmarked estimators need no judge")


@pytest.fixture(scope="module")
def rescoring(default_model, model_cache):
    """(questions, needed statistics, context) over a warm output cache."""
    from bench.cache import Cache
    from bench.data import resolve_source
    from bench.models.hf_backend import GreedyConfig, SamplingConfig
    from bench.perf.estimators import stat_context
    from bench.statistics import compute_statistics
    from estimators import create

    model, tokenizer, fingerprint = default_model
    cache = Cache(str(model_cache))
    ctx = stat_context(model, tokenizer, fingerprint, cache, GreedyConfig(),
                       SamplingConfig(n=4, max_new_tokens=16), seed=0, judge=_no_judge)
    source = resolve_source("demo")
    questions = source.questions(source.dataset_names()[0], "train")[:QUESTIONS]
    needed = {stat for name in ESTIMATORS for stat in create(name).requires}
    compute_statistics(questions, needed, ctx, desc="bench")  # fills the cache once
    yield questions, needed, ctx
    cache.close()


def test_cached_statistics_per_second(benchmark, throughput, rescoring):
    from bench.statistics import compute_statistics

    questions, needed, ctx = rescoring
    bundles, _ = benchmark.pedantic(compute_statistics, args=(questions, needed, ctx, "bench"),
                                    rounds=5, iterations=1)
    assert len(bundles) == len(questions)
    throughput(f"statistics from cache ({len(needed)} kinds)", len(questions), "questions/s")


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimator_scores_per_second(benchmark, throughput, rescoring, name):
    from bench.statistics import compute_statistics
    from estimators import create

    questions, needed, ctx = rescoring
    bundles, _ = compute_statistics(questions, needed, ctx, "bench")
    bundles = bundles * REPEATS
    estimator = create(name)
    scores = benchmark.pedantic(lambda: [estimator.score(b) for b in bundles], rounds=5,
                                iterations=1)
    assert len(scores) == len(bundles)
    throughput(f"estimator {name}", len(bundles), "questions/s")
