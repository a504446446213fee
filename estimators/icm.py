"""ICM coherence: P(True) of the graded answer after self-labelled, mutually coherent demos."""
from __future__ import annotations

from estimators.base import Estimator, StatBundle, finite_or_nan, register
from estimators.stat_types import ICM_READOUT


@register
class IcmCoherence(Estimator):
    """U = -log P(True | demos D*, claim(question, greedy answer)).

    D* are train claims labelled by the model itself with Internal Coherence
    Maximization (Wen et al. 2025, arXiv 2506.10139; an arbench adaptation,
    ESTIMATORS.md §9): no gold answer is read. See ``bench/calculators/icm.py``.
    """

    name = "icm_coherence"
    family = "verbalized"
    requires = (ICM_READOUT,)
    summary = "adaptation: -log P(True) after ICM self-labelled train demonstrations"

    def score(self, stats: StatBundle) -> float:
        return finite_or_nan(-stats[ICM_READOUT].logprobs["true"])
