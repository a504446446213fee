"""Distance of each greedy step's tempered distribution from uniform (ESTIMATORS.md §2).

Both estimators read one per-step reduction recorded by the backend,
S_t = ``root_mass_t2`` = log sum_v sqrt(p~_t(v)) with p~_t = softmax(z_t / 2)
(temperature T = 2), and the vocabulary size V. In LM-Polygraph both raw
scores grow with confidence (STUDY.md §9.1), so arbench returns their
negation: higher = more uncertain.
"""
from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np

from bench.models.outputs import Generation
from estimators.base import GREEDY, GreedyStepAggregate, StatBundle, finite_or_nan, register


class _NegatedStepMean(GreedyStepAggregate):
    """U = -mean_t raw_t over the EOS-policy steps; NaN when there is no step."""

    def per_step(self, greedy: Generation) -> np.ndarray:
        return -self.raw_per_step(greedy)

    @abstractmethod
    def raw_per_step(self, greedy: Generation) -> np.ndarray:
        """The study's per-step value, which grows with confidence."""

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        values = self.per_step(greedy)[self.steps(greedy)]
        return finite_or_nan(float(np.mean(values))) if values.size else math.nan


@register
class RenyiNeg(_NegatedStepMean):
    """Negated Renyi divergence (alpha = 0.5) of p~_t from uniform, minus log V.

    With alpha = 0.5, (1/(alpha-1)) log sum_v p~^alpha = -2 S_t, so

        r_t = -2 S_t - log V = D_0.5(p~_t || Uniform_V) - 2 log V,
        raw = mean_t r_t,     U = -raw.

    raw is -2 log V for a flat p~_t (S_t = log V / 2) and -log V for a one-hot
    (S_t = 0): it grows with confidence, hence the negation. The -2 log V
    offset of the original is kept so that U equals the study's column times
    -1 (STUDY.md §9.9).

    References
    ----------
    Darrin et al. 2023, "Rainproof: An Umbrella to Shield Text Generators from
    Out-of-Distribution Data", arXiv 2212.09171; LM-Polygraph
    ``estimators/renyi_neg.py`` (adapted from icannos/Todd).
    """

    name = "renyi_neg"
    study_name = "RenyiNeg"
    summary = "-mean_t [-2 log sum_v sqrt(p~_t(v)) - log V], p~ = softmax(z/2) (sign fixed)"

    def raw_per_step(self, greedy: Generation) -> np.ndarray:
        root_mass = greedy.root_mass_t2.astype(np.float64)
        return -2.0 * root_mass - math.log(greedy.vocab_size)


@register
class FisherRao(_NegatedStepMean):
    """Negated Fisher-Rao distance of p~_t from uniform, scaled to [0, 1].

        f_t = (2/pi) arccos( sum_v sqrt(p~_t(v) / V) )
            = (2/pi) arccos( exp(S_t) / sqrt(V) ),
        raw = mean_t f_t,     U = -raw.

    f_t is 0 for a flat p~_t and (2/pi) arccos(1/sqrt(V)) (close to 1 for a
    large vocabulary) for a one-hot. The Bhattacharyya coefficient is clipped
    to [0, 1] because float32 rounding of S_t can push it just above 1; that
    rounding also limits f_t's resolution near a flat distribution to ~1e-3
    (arccos is steep at 1), which real next-token distributions never approach.

    References
    ----------
    Darrin et al. 2023, "Rainproof", arXiv 2212.09171; LM-Polygraph
    ``estimators/fisher_rao.py``.
    """

    name = "fisher_rao"
    study_name = "FisherRao"
    summary = "-mean_t (2/pi) arccos(sum_v sqrt(p~_t(v)/V)), p~ = softmax(z/2) (sign fixed)"

    def raw_per_step(self, greedy: Generation) -> np.ndarray:
        root_mass = greedy.root_mass_t2.astype(np.float64)
        coefficient = np.clip(np.exp(root_mass) / math.sqrt(greedy.vocab_size), 0.0, 1.0)
        return (2.0 / math.pi) * np.arccos(coefficient)
