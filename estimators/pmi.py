"""Pointwise mutual information between the question and the greedy answer (ESTIMATORS.md §2).

Both estimators compare l_t = log p(y_t | x, y_<t) from the greedy pass with
u_t = log p(y_t | y_<t), the same tokens teacher-forced without the question
(:data:`~estimators.stat_types.UNCONDITIONAL`). ``u[t]`` is aligned with
greedy token t by the calculator; LM-Polygraph's ``greedy_lm_probs.py`` read
it one position off (STUDY.md §9.5), which is why the alignment is checked
here and tested. Index t below is 0-based ("t >= 1" is the catalogue's
"t >= 2"); as in LM-Polygraph, the first token's term is l_0 alone and u_0 is
not read.
"""
from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import UNCONDITIONAL

#: CPMI's entropy threshold tau and weight lambda (van der Poel et al. 2022,
#: LM-Polygraph ``ConditionalPointwiseMutualInformation`` defaults).
CPMI_TAU = 0.0656
CPMI_LAMBDA = 3.599


def aligned_logprobs(stats: StatBundle) -> tuple[np.ndarray, np.ndarray]:
    """(l, u): greedy and unconditional log-probs of the greedy tokens, float64.

    Raises
    ------
    ValueError
        If the two passes scored a different number of tokens.
    """
    greedy, unconditional = stats[GREEDY], stats[UNCONDITIONAL]
    cond = greedy.token_logprobs.astype(np.float64)
    uncond = np.asarray(unconditional.token_logprobs, dtype=np.float64)
    if uncond.shape != cond.shape:
        raise ValueError(f"question {stats.question_id!r}: the unconditional pass has "
                         f"{uncond.size} tokens, the greedy answer {cond.size}; "
                         "they must score the same tokens")
    return cond, uncond


class _PMIBase(Estimator):
    family = "logit"
    requires = (GREEDY, UNCONDITIONAL)

    @abstractmethod
    def per_step(self, stats: StatBundle) -> np.ndarray:
        """The per-token confidence whose negated mean is U."""

    def score(self, stats: StatBundle) -> float:
        values = self.per_step(stats)[self.steps(stats[GREEDY])]
        return finite_or_nan(-float(np.mean(values))) if values.size else math.nan


@register
class MeanPMI(_PMIBase):
    """U = -(1/n) sum_t PMI_t, PMI_t = l_t - u_t for t >= 1 and PMI_0 = l_0.

    A token the question makes more likely than the bare answer prefix does
    has positive PMI; an answer that is likely whatever the question (generic
    continuation) has PMI near 0, so U is higher.

    References
    ----------
    PMI hallucination score after Takayama & Arase 2019, "Relevant and
    Informative Response Generation using Pointwise Mutual Information"
    (NLP4ConvAI 2019); van der Poel et al. 2022, arXiv 2210.13210, for its use
    as a hallucination score; LM-Polygraph
    ``estimators/pointwise_mutual_information.py`` and
    ``stat_calculators/greedy_lm_probs.py``.
    """

    name = "mean_pmi"
    study_name = "MeanPointwiseMutualInformation"
    summary = "-mean_t (l_t - u_t), u_t = log p(y_t | y_<t) without the question (u_0 = 0)"

    def per_step(self, stats: StatBundle) -> np.ndarray:
        cond, uncond = aligned_logprobs(stats)
        pmi = cond.copy()
        pmi[1:] -= uncond[1:]
        return pmi


@register
class MeanCPMI(_PMIBase):
    """U = -(1/n) sum_t c_t, c_t = l_t - lambda * 1[t >= 1 and H_t >= tau] * u_t.

    Conditional PMI subtracts the unconditional log-prob only at steps where
    the greedy distribution is uncertain (entropy H_t of the full next-token
    distribution at least tau), with tau = 0.0656 and lambda = 3.599.

    References
    ----------
    van der Poel, Cotterell & Meister 2022, "Mutual Information Alleviates
    Hallucinations in Abstractive Summarization", arXiv 2210.13210;
    LM-Polygraph ``estimators/conditional_pointwise_mutual_information.py``.
    """

    name = "mean_cpmi"
    study_name = "MeanConditionalPointwiseMutualInformation"
    summary = "-mean_t (l_t - 3.599 * 1[t>=1, H_t >= 0.0656] * u_t)"

    def per_step(self, stats: StatBundle) -> np.ndarray:
        cond, uncond = aligned_logprobs(stats)
        gate = stats[GREEDY].entropies.astype(np.float64) >= CPMI_TAU
        gate[:1] = False  # the first token has no unconditional term
        return cond - CPMI_LAMBDA * np.where(gate, uncond, 0.0)
