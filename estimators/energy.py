"""Energy score of the greedy pass's raw logits (ESTIMATORS.md §2)."""
from __future__ import annotations

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, register


@register
class EnergyScore(Estimator):
    """U = -mean_t logsumexp_v z_t(v) over the raw (untempered) logits.

    The free energy E_t = -logsumexp_v z_t(v) is high for inputs the model
    is unfamiliar with; U is its mean over the answer steps. Unlike the other
    logit estimators it depends on the logits' scale, so it cannot be
    recovered from normalised log-probs.

    References
    ----------
    Liu et al. 2020, "Energy-based Out-of-distribution Detection", NeurIPS 2020,
    arXiv 2010.03759. SeaKR logs it for its greedy output
    (``SeaKR/vllm_uncertainty/vllm/model_executor/layers/sampler.py`` in
    s-nlp/AdaRAGUE).
    """

    name = "energy_score"
    family = "logit"
    requires = (GREEDY,)
    summary = "-mean_t logsumexp_v z_t(v) of the raw logits"

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        return float(-np.mean(greedy.logsumexp[self.steps(greedy)].astype(np.float64)))
