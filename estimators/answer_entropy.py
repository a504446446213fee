"""Entropy of the distribution of normalised sampled answers."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from bench.metrics.qa import normalize
from estimators.base import SAMPLES, Estimator, StatBundle, register


def answer_frequencies(texts: Iterable[str]) -> dict[str, float]:
    """Relative frequency of each normalised answer.

    Parameters
    ----------
    texts : iterable of str
        Sampled answers.

    Returns
    -------
    dict of str to float
        ``normalize(text)`` -> count / N, in order of first appearance; the
        values sum to 1. An answer that normalises to the empty string is its
        own class ("no answer"). Empty when ``texts`` is empty.
    """
    counts = Counter(normalize(text) for text in texts)
    total = sum(counts.values())
    return {answer: count / total for answer, count in counts.items()}


@register
class AnswerEntropy(Estimator):
    """Entropy of the empirical distribution of sampled answers.

    U = -sum_a f_a log f_a (natural log), where f_a is the share of the N
    samples whose answer equals ``a`` after :func:`bench.metrics.qa.normalize`
    (the same matching as ``self_consistency``). 0 when all samples agree,
    log N when all differ.

    Notes
    -----
    With NLI clusters instead of string equality this is the empirical
    (frequency) variant of semantic entropy. NaN when there are no samples.

    References
    ----------
    Wang et al. 2022, "Self-Consistency", arXiv 2203.11171; Kuhn et al. 2023,
    "Semantic Uncertainty", arXiv 2302.09664.
    """

    name = "answer_entropy"
    family = "consistency"
    requires = (SAMPLES,)
    summary = "-sum_a f_a log f_a over normalised sample answers"

    def score(self, stats: StatBundle) -> float:
        frequencies = answer_frequencies(stats[SAMPLES].texts)
        if not frequencies:
            return math.nan
        return 0.0 + sum(-f * math.log(f) for f in frequencies.values())
