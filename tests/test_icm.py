"""ICM self-labelling: the annealing search by hand, the calculator with the real model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.cache import Cache
from bench.calculators.icm import anneal_labels
from bench.data.schema import Question
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.prompts import TEMPLATES
from bench.statistics import StatContext, compute_statistics
from bench.stores import GenerationStore
from estimators import create
from estimators.base import StatBundle
from estimators.stat_types import ICM_READOUT, Readout


def test_annealing_finds_the_maximum_of_a_separable_objective():
    target = [1, 0, 1, 1, 0]

    def agreement(labels):
        return float(sum(a == b for a, b in zip(labels, target)))

    best, value = anneal_labels([0, 1, 0, 0, 1], agreement, iterations=200,
                                rng=np.random.default_rng(0))
    assert best == target and value == 5.0


def test_annealing_never_returns_worse_than_the_start():
    def prefer_zeros(labels):
        return -float(sum(labels))

    best, value = anneal_labels([0, 0, 0], prefer_zeros, iterations=5,
                                rng=np.random.default_rng(1))
    assert best == [0, 0, 0] and value == 0.0


def test_icm_coherence_is_minus_log_p_true():
    bundle = StatBundle("q", {ICM_READOUT: Readout({"true": math.log(0.25), "false": -2.0})})
    assert create("icm_coherence").score(bundle) == pytest.approx(math.log(4))


def test_icm_calculator_labels_train_claims_and_reads_every_question(tmp_path, fp32_backend):
    questions = [Question(f"t{i}", q, (a,), "demo", "train") for i, (q, a) in enumerate(
        [("What is the capital of Italy?", "Rome"), ("Who painted the Mona Lisa?", "da Vinci"),
         ("What is the largest planet?", "Jupiter")])]
    questions.append(Question("x", "What is the capital of Spain?", ("Madrid",), "demo", "test"))
    store = GenerationStore(Cache(tmp_path), "m", lambda: fp32_backend, 4, progress=False)
    ctx = StatContext(store, TEMPLATES["short_answer_fewshot"], GreedyConfig(max_new_tokens=8),
                      SamplingConfig(n=2, max_new_tokens=4), seed=0)
    bundles, costs = compute_statistics(questions, {ICM_READOUT}, ctx, "t")
    for bundle, cost in zip(bundles, costs[ICM_READOUT]):
        readout = bundle[ICM_READOUT].logprobs
        assert readout["true"] <= 0 and readout["false"] <= 0
        assert np.logaddexp(readout["true"], readout["false"]) <= 1e-6
        assert cost.forward_passes == 1
    # The selection is cached: a second pass computes nothing.
    calls = fp32_backend.counter.forward_passes
    again, _ = compute_statistics(questions, {ICM_READOUT}, ctx, "t")
    assert fp32_backend.counter.forward_passes == calls
    assert [b[ICM_READOUT].logprobs for b in again] == [b[ICM_READOUT].logprobs for b in bundles]


def test_icm_calculator_needs_train_questions(tmp_path):
    from tests.scripted import ScriptedBackend
    store = GenerationStore(Cache(tmp_path), "m", ScriptedBackend, 4, progress=False)
    ctx = StatContext(store, TEMPLATES["short_answer_fewshot"], GreedyConfig(),
                      SamplingConfig(), seed=0)
    only_test = [Question("x", "Q?", ("A",), "demo", "test")]
    with pytest.raises(ValueError, match="train questions"):
        compute_statistics(only_test, {ICM_READOUT}, ctx, "t")
