"""TokenSAR: relevance-weighted negative log-likelihood of the greedy answer (ESTIMATORS.md §4)."""
from __future__ import annotations

import math

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import GREEDY_RELEVANCE


@register
class TokenSAR(Estimator):
    """U = sum_t -l_t R_t / sum_t R_t over the greedy answer's EOS-policy steps.

    R_t = 1 - g(x + y, x + y without token t) is how much the answer's
    meaning, judged by a cross-encoder g, changes when token t is removed
    (:data:`GREEDY_RELEVANCE`, ``per_sequence[0]``). Shifting the weight of
    the sequence NLL to relevant tokens keeps a confident answer from being
    penalised for uncertain filler words. When every R_t is 0 (no token
    matters to the judge) the weights fall back to uniform, i.e. the mean
    token NLL. NaN when there is no step.

    References
    ----------
    Duan et al. 2023, "Shifting Attention to Relevance: Towards the Predictive
    Uncertainty Quantification of Free-Form Large Language Models",
    arXiv 2307.01379; LM-Polygraph ``estimators/token_sar.py``.
    """

    name = "token_sar"
    family = "logit+similarity"
    requires = (GREEDY, GREEDY_RELEVANCE)
    summary = "sum_t -l_t R_t / sum_t R_t, R_t = SAR token relevance (cross-encoder)"

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        relevance = np.asarray(stats[GREEDY_RELEVANCE].per_sequence[0], dtype=np.float64)
        if relevance.shape != (greedy.n_tokens,):
            raise ValueError(f"question {stats.question_id!r}: {relevance.size} relevance "
                             f"values for {greedy.n_tokens} greedy tokens")
        steps = self.steps(greedy)
        nll = -greedy.token_logprobs[steps].astype(np.float64)
        relevance = relevance[steps]
        if nll.size == 0:
            return math.nan
        if relevance.sum() == 0:
            relevance = np.ones_like(relevance)
        return finite_or_nan(float(np.sum(nll * relevance) / relevance.sum()))
