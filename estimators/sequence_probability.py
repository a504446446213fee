"""Likelihood of the greedy answer: perplexity and maximum sequence probability."""
from __future__ import annotations

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, register


@register
class Perplexity(Estimator):
    """U = -(1/n) sum_t log p(y_t): log-perplexity (Fomicheva et al. 2020)."""

    name = "perplexity"
    family = "logit"
    requires = (GREEDY,)
    study_name = "Perplexity"
    summary = "-(1/n) sum_t log p_t(y_t)"

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        return float(-np.mean(greedy.token_logprobs[self.steps(greedy)]))


@register
class MaximumSequenceProbability(Estimator):
    """U = -sum_t log p(y_t): the sequence negative log-likelihood."""

    name = "maximum_sequence_probability"
    family = "logit"
    requires = (GREEDY,)
    summary = "-sum_t log p_t(y_t)"

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        return float(-np.sum(greedy.token_logprobs[self.steps(greedy)]))
