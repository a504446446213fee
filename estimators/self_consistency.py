"""Majority-vote agreement of sampled answers (self-consistency)."""
from __future__ import annotations

import math

from estimators.answer_entropy import answer_frequencies
from estimators.base import SAMPLES, Estimator, StatBundle, register


@register
class SelfConsistency(Estimator):
    """U = 1 - c, c = share of samples equal (after ``normalize``) to the majority answer.

    Wang et al. 2022 (arXiv 2203.11171). Answers that normalise to the empty
    string count as one more answer class ("no answer").
    """

    name = "self_consistency"
    family = "consistency"
    requires = (SAMPLES,)
    summary = "1 - (majority answer count)/N over normalised samples"

    def score(self, stats: StatBundle) -> float:
        frequencies = answer_frequencies(stats[SAMPLES].texts)
        return 1.0 - max(frequencies.values()) if frequencies else math.nan
