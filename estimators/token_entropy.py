"""Mean and max entropy of the greedy pass's full next-token distributions."""
from __future__ import annotations

import numpy as np

from estimators.base import GREEDY, Estimator, StatBundle, register


class _TokenEntropy(Estimator):
    family = "logit"
    requires = (GREEDY,)
    _reduce = staticmethod(np.mean)

    def score(self, stats: StatBundle) -> float:
        greedy = stats[GREEDY]
        return float(self._reduce(greedy.entropies[self.steps(greedy)]))


@register
class MeanTokenEntropy(_TokenEntropy):
    """U = mean_t H_t (Fomicheva et al. 2020)."""

    name = "mean_token_entropy"
    study_name = "MeanTokenEntropy"
    summary = "mean over answer steps of the full-distribution entropy H_t"
    _reduce = staticmethod(np.mean)


@register
class MaxTokenEntropy(_TokenEntropy):
    """U = max_t H_t: the least certain step decides."""

    name = "max_token_entropy"
    study_name = "MaxTokenEntropy"
    summary = "max over answer steps of H_t"
    _reduce = staticmethod(np.max)
