"""Reflective confidence: an inference-time adaptation of DRO's R3 reward (ESTIMATORS.md §9)."""
from __future__ import annotations

import math

import numpy as np

from estimators.base import Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import REFLECTIVE


def reflective_weights(logprobs: np.ndarray) -> np.ndarray:
    """w_j = sigma_j / sum_k sigma_k, sigma_j the population std over chains of column j.

    Uniform when no column varies (sum sigma = 0), e.g. with a single chain.
    """
    sigma = logprobs.std(axis=0)  # ddof = 0
    total = sigma.sum()
    if total == 0:
        return np.full(logprobs.shape[1], 1.0 / logprobs.shape[1])
    return sigma / total


@register
class R3ReflectiveConfidence(Estimator):
    """U = -(1/N) sum_i sum_j w_j l_ij, w_j proportional to std_i l_ij.

    ``l_ij = log p(y_j | q, chain_i, y_<j)`` is the greedy answer y
    teacher-forced after each of N sampled reasoning chains
    (:data:`REFLECTIVE`). Answer tokens whose likelihood varies across chains
    are the ones the reasoning decides ("reasoning-reflective"), so they get
    the weight; tokens every chain predicts alike (formatting, tokens fixed
    by earlier ones) get little. U is the reflective-weighted NLL of the
    answer averaged over chains: high when the reasoning the model produces
    does not support its answer. NaN when there is no chain or no token.

    This is an adaptation, not a published gate: R3 is a training reward that
    scores chains against a reference answer; here the model's own answer
    stands in for the reference and the certainty-propagation damping of R3
    is not applied.

    References
    ----------
    Xu, Chakraborty et al. 2025, "Direct Reasoning Optimization: LLMs Can
    Reward and Refine Their Own Reasoning for Open-Ended Tasks",
    arXiv 2506.13351 (Reasoning Reflection Reward, §3). No reference
    implementation.
    """

    name = "r3_reflective_confidence"
    family = "consistency+logit"
    requires = (REFLECTIVE,)
    summary = ("adaptation of DRO's R3: -mean over chains of the std-weighted answer "
               "log-likelihood")

    def score(self, stats: StatBundle) -> float:
        logprobs = np.asarray(stats[REFLECTIVE].logprobs, dtype=np.float64)
        if logprobs.ndim != 2:
            raise ValueError(f"question {stats.question_id!r}: reflective log-probs must be "
                             f"(chains, tokens), got shape {logprobs.shape}")
        if logprobs.size == 0:
            return math.nan
        weights = reflective_weights(logprobs)
        return finite_or_nan(-float(np.mean(logprobs @ weights)))
