"""Probability of the chosen greedy tokens: the study's MaximumTokenProbability
aggregates and FLARE's trigger as a score (ESTIMATORS.md §2 and §8).

The token score is q_t = -p_t(y_t) = -exp(l_t), so the arbench names say what
is computed: ``neg_min_token_prob`` = max_t q_t = -min_t p_t(y_t) is the
study's **Max**MaximumTokenProbability, and ``neg_max_token_prob`` = min_t q_t
= -max_t p_t(y_t) is its **Min**MaximumTokenProbability.
"""
from __future__ import annotations

import numpy as np

from bench.models.outputs import Generation
from estimators.base import GreedyStepAggregate, register


class _NegTokenProb(GreedyStepAggregate):
    def per_step(self, greedy: Generation) -> np.ndarray:
        """q_t = -p_t(y_t)."""
        return -np.exp(greedy.token_logprobs.astype(np.float64))


@register
class NegMeanTokenProb(_NegTokenProb):
    """U = mean_t q_t = -mean_t p_t(y_t).

    References
    ----------
    LM-Polygraph ``estimators/max_probability.py`` (``MaximumTokenProbability``)
    aggregated by ``calc_stats`` in ``UC/utils.py`` of s-nlp/AdaRAGUE.
    """

    name = "neg_mean_token_prob"
    study_name = "MeanMaximumTokenProbability"
    summary = "-mean_t p_t(y_t)"
    reduce = staticmethod(np.mean)


@register
class NegMinTokenProb(_NegTokenProb):
    """U = max_t q_t = -min_t p_t(y_t): the least confident token decides.

    References
    ----------
    LM-Polygraph ``MaximumTokenProbability`` with AdaRAGUE's ``calc_stats``
    (column MaxMaximumTokenProbability); the one-shot form of FLARE's trigger.
    """

    name = "neg_min_token_prob"
    study_name = "MaxMaximumTokenProbability"
    summary = "-min_t p_t(y_t) (study: MaxMaximumTokenProbability)"
    reduce = staticmethod(np.max)


@register
class NegMedianTokenProb(_NegTokenProb):
    """U = median_t q_t = -median_t p_t(y_t).

    References
    ----------
    LM-Polygraph ``MaximumTokenProbability`` with AdaRAGUE's ``calc_stats``.
    """

    name = "neg_median_token_prob"
    study_name = "MedianMaximumTokenProbability"
    summary = "-median_t p_t(y_t)"
    reduce = staticmethod(np.median)


@register
class NegMaxTokenProb(_NegTokenProb):
    """U = min_t q_t = -max_t p_t(y_t): the most confident token decides.

    References
    ----------
    LM-Polygraph ``MaximumTokenProbability`` with AdaRAGUE's ``calc_stats``
    (column MinMaximumTokenProbability).
    """

    name = "neg_max_token_prob"
    study_name = "MinMaximumTokenProbability"
    summary = "-max_t p_t(y_t) (study: MinMaximumTokenProbability)"
    reduce = staticmethod(np.min)


@register
class FlareMinProb(GreedyStepAggregate):
    """U = 1 - min_t p_t(y_t): FLARE's retrieval trigger as a score.

    FLARE retrieves when any look-ahead token has p < theta, i.e. iff
    U > 1 - theta. On a whole answer this is ``neg_min_token_prob`` + 1, so
    both rank questions identically.

    References
    ----------
    Jiang et al. 2023, "Active Retrieval Augmented Generation", arXiv 2305.06983;
    ``dragin/src/algorithm/rag_flare.py`` in s-nlp/AdaRAGUE.
    """

    name = "flare_min_prob"
    summary = "1 - min_t p_t(y_t) (FLARE trigger; retrieve iff U > 1 - theta)"

    reduce = staticmethod(np.max)

    def per_step(self, greedy: Generation) -> np.ndarray:
        return 1.0 - np.exp(greedy.token_logprobs.astype(np.float64))
