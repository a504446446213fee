"""Calculators of the extra-pass statistics, with the real default model on two questions."""
from __future__ import annotations

import numpy as np
import pytest

from bench.cache import Cache
from bench.data.schema import Question
from bench.ledger import Cost
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.prompts import TEMPLATES
from bench.statistics import StatContext, compute_statistics, dependency_order
from bench.stores import CacheMissError, GenerationStore
from estimators.base import GREEDY, SAMPLES
from estimators.stat_types import (
    ANSWER_ATTENTION,
    P_TRUE,
    REFLECTIVE,
    REVISION,
    UNCONDITIONAL,
    VERBALIZED,
)
from tests.scripted import ScriptedBackend

QUESTIONS = [Question("q1", "What is the capital of France?", ("Paris",), "demo", "test"),
             Question("q2", "Who wrote War and Peace?", ("Leo Tolstoy",), "demo", "test")]
EXTRA = {UNCONDITIONAL, P_TRUE, VERBALIZED, REVISION, ANSWER_ATTENTION, REFLECTIVE}


def context(cache_dir, backend, offline=False):
    store = GenerationStore(Cache(cache_dir), "smollm2-fp32", lambda: backend, batch_size=4,
                            progress=False, offline=offline)
    return StatContext(store, TEMPLATES["short_answer_fewshot"], GreedyConfig(max_new_tokens=12),
                       SamplingConfig(n=3, max_new_tokens=8), seed=0)


@pytest.fixture(scope="module")
def computed(tmp_path_factory, fp32_backend):
    cache_dir = tmp_path_factory.mktemp("calc")
    before = dict(vars(fp32_backend.counter))
    bundles, costs = compute_statistics(QUESTIONS, EXTRA, context(cache_dir, fp32_backend), "t")
    work = {k: v - before[k] for k, v in vars(fp32_backend.counter).items()}
    return cache_dir, bundles, costs, work


def test_every_extra_statistic_is_aligned_with_the_greedy_answer(computed):
    _, bundles, _, _ = computed
    for bundle in bundles:
        greedy = bundle[GREEDY]
        assert bundle[UNCONDITIONAL].token_logprobs.shape == (greedy.n_tokens,)
        assert bundle[ANSWER_ATTENTION].weights.shape == (greedy.n_tokens, greedy.n_tokens)
        readout = bundle[P_TRUE].logprobs
        assert set(readout) == {"true", "false"}
        assert np.logaddexp(readout["true"], readout["false"]) <= 1e-6  # disjoint token sets
        reflective = bundle[REFLECTIVE]
        answer_len = greedy.n_tokens - (greedy.stop_reason != "length")
        assert reflective.logprobs.shape == (4, answer_len) and len(reflective.chains) == 4
        assert np.all(reflective.logprobs <= 1e-6)
        assert bundle[VERBALIZED].text and bundle[REVISION].text


def test_the_question_raises_the_answer_probability(computed):
    # Without the question "Paris" is far less likely: PMI is positive overall.
    _, bundles, _, _ = computed
    greedy = bundles[0][GREEDY]
    assert "Paris" in greedy.text
    assert greedy.token_logprobs.sum() > bundles[0][UNCONDITIONAL].token_logprobs.sum()


def test_costs_count_each_pass_once_per_question(computed):
    _, _, costs, work = computed
    for i in range(len(QUESTIONS)):
        assert costs[GREEDY][i].generate_calls == 1
        assert costs[UNCONDITIONAL][i].forward_passes == 1
        assert costs[P_TRUE][i].forward_passes == 1
        assert costs[ANSWER_ATTENTION][i].forward_passes == 1
        assert costs[VERBALIZED][i].generate_calls == 1
        assert costs[REVISION][i].generate_calls == 1
        assert costs[REFLECTIVE][i].generate_calls == 4
        assert costs[REFLECTIVE][i].forward_passes == 4
    # Backend work: greedy, verbalized, revision (2 prompts each) + 2 chain prompts.
    assert work["generate_calls"] == 8
    # 2 unconditional + 2 P(True) + 2 attention rows + 8 chains forced.
    assert work["forward_passes"] >= 14


def test_everything_is_cached_and_offline_rescoring_needs_no_model(computed):
    cache_dir, bundles, _, _ = computed

    def no_model():
        raise AssertionError("the model must not be loaded")

    again, costs = compute_statistics(QUESTIONS, EXTRA, context(cache_dir, no_model,
                                                                offline=True), "t")
    for a, b in zip(bundles, again):
        np.testing.assert_array_equal(a[UNCONDITIONAL].token_logprobs,
                                      b[UNCONDITIONAL].token_logprobs)
        assert a[P_TRUE].logprobs == b[P_TRUE].logprobs
        assert a[REFLECTIVE].chains == b[REFLECTIVE].chains
    # Cached costs are the costs of the original computation.
    assert costs[UNCONDITIONAL][0].forward_passes == 1


def test_offline_store_names_what_is_missing(tmp_path):
    ctx = context(tmp_path, ScriptedBackend(), offline=True)
    with pytest.raises(CacheMissError, match="greedy.*not in the cache"):
        compute_statistics(QUESTIONS, {GREEDY}, ctx, "demo")


def test_generate_calls_do_not_grow_with_the_number_of_estimators(tmp_path):
    # Many estimators declare GREEDY and SAMPLES; each is produced once per question.
    backend = ScriptedBackend()
    ctx = context(tmp_path / "a", backend)
    _, costs = compute_statistics(QUESTIONS, {GREEDY, SAMPLES, GREEDY, SAMPLES}, ctx, "t")
    assert backend.counter.generate_calls == 2 * len(QUESTIONS)
    assert sum((c for c in costs[SAMPLES]), Cost()).generate_calls == 3 * len(QUESTIONS)


def test_dependency_order_puts_greedy_first():
    order = dependency_order({REFLECTIVE, UNCONDITIONAL, SAMPLES})
    assert order.index(GREEDY) < order.index(REFLECTIVE)
    assert order.index(GREEDY) < order.index(UNCONDITIONAL)
    assert set(order) == {GREEDY, SAMPLES, REFLECTIVE, UNCONDITIONAL}
