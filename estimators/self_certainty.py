"""Self-certainty (Kang et al. 2025, arXiv 2502.18581), sign flipped."""
from __future__ import annotations

import math

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, register


@register
class SelfCertainty(Estimator):
    """U = -SC with SC = (1/n) sum_t KL(Uniform_V || p_t).

    KL(U || p_t) = -log V - (1/V) sum_v log p_t(v), so
    U = (1/n) sum_t [log V + mean_v log p_t(v)]. The mean is taken over the
    full vocabulary in the same pass as the answer (upstream silently used
    top-k log-probs, which turns V into k).
    """

    name = "self_certainty"
    family = "logit"
    requires = (GREEDY,)
    summary = "-(1/n) sum_t KL(Uniform_V || p_t)"

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        mean_logprob = greedy.mean_logprobs[self.steps(greedy)].astype(np.float64)
        return float(np.mean(math.log(greedy.vocab_size) + mean_logprob))
