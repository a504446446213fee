"""Likelihood of the greedy answer: perplexity and maximum sequence probability."""
from __future__ import annotations

import numpy as np

from bench.models.outputs import Generation
from estimators.base import GreedyStepAggregate, register


class _NegLogLikelihood(GreedyStepAggregate):
    def per_step(self, greedy: Generation) -> np.ndarray:
        """-log p_t(y_t)."""
        return -greedy.token_logprobs.astype(np.float64)


@register
class Perplexity(_NegLogLikelihood):
    """U = -(1/n) sum_t log p(y_t): log-perplexity (Fomicheva et al. 2020)."""

    name = "perplexity"
    study_name = "Perplexity"
    summary = "-(1/n) sum_t log p_t(y_t)"
    reduce = staticmethod(np.mean)


@register
class MaximumSequenceProbability(_NegLogLikelihood):
    """U = -sum_t log p(y_t): the sequence negative log-likelihood."""

    name = "maximum_sequence_probability"
    summary = "-sum_t log p_t(y_t)"
    reduce = staticmethod(np.sum)
