"""Claim-conditioned probability of the greedy answer, sequence level (ESTIMATORS.md §2)."""
from __future__ import annotations

import math

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import GREEDY_ALTERNATIVES

#: A judge probability must reach this to label a pair entail / contra.
MIN_LABEL_PROB = 0.5


def alternative_labels(entail: np.ndarray, contra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n, K) masks of the alternatives labelled entail and contra.

    entail if P(entail) > P(contra) and P(entail) >= 0.5; contra if
    P(contra) > P(entail) and P(contra) >= 0.5; otherwise neutral.
    Alternative 0 is the greedy token itself and is always entail.
    """
    is_entail = (entail > contra) & (entail >= MIN_LABEL_PROB)
    is_contra = (contra > entail) & (contra >= MIN_LABEL_PROB)
    is_entail[:, 0] = True
    is_contra[:, 0] = False
    return is_entail, is_contra


@register
class CCP(Estimator):
    """U = -prod_t CCP_t, CCP_t = sum_{k in E_t} e^l_tk / sum_{k in E_t or C_t} e^l_tk.

    At each greedy step t the K most likely tokens (``topk_logprobs``; k = 0
    is the greedy token) are labelled by a judge that compares the greedy
    word with each alternative word (:data:`GREEDY_ALTERNATIVES`): E_t are the
    alternatives that mean the same (entail), C_t those that contradict it.
    Neutral alternatives are left out of both sums, so probability mass on
    paraphrases does not count as doubt, and mass on contradicting claims
    does. The product over the EOS-policy steps is the sequence's
    claim-conditioned probability; U is its negation (higher = more
    uncertain). NaN when there is no step.

    References
    ----------
    Fadeeva et al. 2024, "Fact-Checking the Output of Large Language Models
    via Token-Level Uncertainty Quantification", arXiv 2403.04696;
    LM-Polygraph ``estimators/claim_conditioned_probability.py`` and
    ``stat_calculators/greedy_alternatives_nli.py``.
    """

    name = "ccp"
    family = "logit+nli"
    requires = (GREEDY, GREEDY_ALTERNATIVES)
    study_name = "CCP"
    summary = "-prod_t sum_E p / sum_(E+C) p over the top-K alternatives (judge labels)"

    def score(self, stats: StatBundle) -> float:
        greedy, judged = stats[GREEDY], stats[GREEDY_ALTERNATIVES]
        logprobs = greedy.topk_logprobs.astype(np.float64)
        entail = np.asarray(judged.entail, dtype=np.float64)
        contra = np.asarray(judged.contra, dtype=np.float64)
        if entail.shape != logprobs.shape or contra.shape != logprobs.shape:
            raise ValueError(f"question {stats.question_id!r}: judge matrices "
                             f"{entail.shape}/{contra.shape} do not match the greedy top-k "
                             f"log-probs {logprobs.shape}")
        steps = self.steps(greedy)
        logprobs, entail, contra = logprobs[steps], entail[steps], contra[steps]
        if logprobs.shape[0] == 0:
            return math.nan
        is_entail, is_contra = alternative_labels(entail, contra)
        # exp(l - l_greedy) rescales numerator and denominator alike, so it
        # cannot underflow to 0/0 for a greedy token of tiny probability.
        mass = np.exp(logprobs - logprobs[:, :1])
        entailed = np.where(is_entail, mass, 0.0).sum(axis=1)
        judged_mass = entailed + np.where(is_contra, mass, 0.0).sum(axis=1)
        return finite_or_nan(-float(np.prod(entailed / judged_mass)))
