"""Mean, max, median and min entropy of the greedy pass's full next-token distributions.

Fomicheva et al. 2020, "Unsupervised Quality Estimation for Neural Machine
Translation", arXiv 2005.10608; the aggregations follow ``calc_stats`` in
``UC/utils.py`` of s-nlp/AdaRAGUE (ESTIMATORS.md §2).
"""
from __future__ import annotations

import numpy as np

from bench.models.outputs import Generation
from estimators.base import GreedyStepAggregate, register


class _TokenEntropy(GreedyStepAggregate):
    def per_step(self, greedy: Generation) -> np.ndarray:
        return greedy.entropies


@register
class MeanTokenEntropy(_TokenEntropy):
    """U = mean_t H_t (Fomicheva et al. 2020)."""

    name = "mean_token_entropy"
    study_name = "MeanTokenEntropy"
    summary = "mean over answer steps of the full-distribution entropy H_t"
    reduce = staticmethod(np.mean)


@register
class MaxTokenEntropy(_TokenEntropy):
    """U = max_t H_t: the least certain step decides."""

    name = "max_token_entropy"
    study_name = "MaxTokenEntropy"
    summary = "max over answer steps of H_t"
    reduce = staticmethod(np.max)


@register
class MedianTokenEntropy(_TokenEntropy):
    """U = median_t H_t (Fomicheva et al. 2020; AdaRAGUE ``calc_stats``)."""

    name = "median_token_entropy"
    study_name = "MedianTokenEntropy"
    summary = "median over answer steps of H_t"
    reduce = staticmethod(np.median)


@register
class MinTokenEntropy(_TokenEntropy):
    """U = min_t H_t: the most certain step decides (AdaRAGUE ``calc_stats``)."""

    name = "min_token_entropy"
    study_name = "MinTokenEntropy"
    summary = "min over answer steps of H_t"
    reduce = staticmethod(np.min)
