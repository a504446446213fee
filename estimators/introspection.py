"""Stability of the greedy answer under one request to reconsider (RISE-inspired)."""
from __future__ import annotations

from bench.metrics.qa import f1
from estimators.base import GREEDY, Estimator, StatBundle, register
from estimators.stat_types import REVISION


@register
class IntrospectionStability(Estimator):
    """U = 1 - F1(revised answer, greedy answer), SQuAD token F1 after ``normalize``.

    The model answers, is asked once in a second chat turn to reconsider,
    and answers again (:data:`~estimators.stat_types.REVISION`). A model
    that keeps its answer (U = 0) is taken to be sure of it; one that moves
    to a disjoint answer (U = 1) was not. Token F1 and normalisation are the
    benchmark's own (:func:`bench.metrics.qa.f1`), so "the same answer" means
    what it means for grading. F1 is symmetric, and two answers that both
    normalise to nothing count as kept (F1 = 1).

    This is an arbench adaptation, not a published gate: RISE trains models
    to correct themselves over turns; here a single untrained revision turn
    serves as a probe of how firmly the answer is held.

    References
    ----------
    Qu et al. 2024, "Recursive Introspection: Teaching Language Model Agents
    How to Self-Improve" (RISE), arXiv 2407.18219.
    """

    name = "introspection_stability"
    family = "verbalized"
    requires = (GREEDY, REVISION)
    summary = "1 - token F1(greedy answer, answer after 'reconsider' turn) (RISE-inspired)"

    def score(self, stats: StatBundle) -> float:
        return 1.0 - f1(stats[REVISION].text, [stats[GREEDY].text])
