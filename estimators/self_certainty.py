"""Self-certainty (Kang et al. 2025, arXiv 2502.18581), sign flipped."""
from __future__ import annotations

import math

import numpy as np

from bench.models.outputs import Generation
from estimators.base import GreedyStepAggregate, register


@register
class SelfCertainty(GreedyStepAggregate):
    """U = -SC with SC = (1/n) sum_t KL(Uniform_V || p_t).

    KL(U || p_t) = -log V - (1/V) sum_v log p_t(v), so
    U = (1/n) sum_t [log V + mean_v log p_t(v)]. The mean is taken over the
    full vocabulary in the same pass as the answer (upstream silently used
    top-k log-probs, which turns V into k).
    """

    name = "self_certainty"
    summary = "-(1/n) sum_t KL(Uniform_V || p_t)"
    reduce = staticmethod(np.mean)

    def per_step(self, greedy: Generation) -> np.ndarray:
        """log V + mean_v log p_t(v) = -KL(Uniform_V || p_t)."""
        return math.log(greedy.vocab_size) + greedy.mean_logprobs.astype(np.float64)
