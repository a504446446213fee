"""The threshold gate (the study's ThresholdOptimizer, both directions) and the dev split.

A threshold gate is fit on train only. Train is split (seeded) into a fit part
and a dev part; the threshold is searched on the fit part for each direction
and the direction chosen on dev, so test labels are never read.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from bench.gates.registry import accuracy, check_scores_and_need, register_gate


@register_gate
@dataclass(frozen=True)
class ThresholdGate:
    """Retrieve iff ``direction * score >= direction * threshold``; NaN scores retrieve.

    Attributes
    ----------
    threshold : float
    direction : int
        +1: higher score → retrieve (the estimator convention); -1: reversed.
    fit_accuracy, dev_accuracy : float
        Accuracy of predicting the need label on the fit and dev parts.
    """

    kind: ClassVar[str] = "threshold"
    simplicity: ClassVar[int] = 0

    threshold: float
    direction: int
    fit_accuracy: float
    dev_accuracy: float

    def decide(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        decision = self.direction * scores >= self.direction * self.threshold
        return decision | np.isnan(scores)

    def probability(self, scores: np.ndarray) -> None:
        """A hard threshold has no calibrated probability: ECE/Brier are NaN for it."""
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def fit(cls, scores: np.ndarray, need: np.ndarray, dev_fraction: float = 0.2,
            seed: int = 0, n_thresholds: int = 100) -> ThresholdGate:
        """Split train with :func:`split_dev`, then :meth:`fit_parts`.

        The candidate thresholds are ``linspace(min, max, n_thresholds)`` of
        the fit part's finite scores (the study's ThresholdOptimizer); the
        first best one wins. Ties between directions keep +1.
        """
        scores, need = check_scores_and_need(scores, need)
        fit_idx, dev_idx = split_dev(len(scores), dev_fraction, seed)
        if len(fit_idx) == 0:
            raise ValueError(f"no rows left to fit a gate: {len(scores)} train row(s), "
                             f"{len(dev_idx)} of them held out for dev "
                             f"(dev_fraction {dev_fraction})")
        return cls.fit_parts(scores[fit_idx], need[fit_idx], scores[dev_idx], need[dev_idx],
                             seed, n_thresholds)

    @classmethod
    def fit_parts(cls, fit_scores: np.ndarray, fit_need: np.ndarray, dev_scores: np.ndarray,
                  dev_need: np.ndarray, seed: int = 0, n_thresholds: int = 100
                  ) -> ThresholdGate:
        """Best threshold per direction on the fit part; the direction with the better
        dev accuracy wins (ties keep +1). An empty dev part scores as the fit part.

        ``seed`` is accepted for the common interface; the search is deterministic.
        """
        best: ThresholdGate | None = None
        for direction in (1, -1):
            threshold, fit_acc = _search(fit_scores, fit_need, direction, n_thresholds)
            gate = cls(threshold, direction, fit_acc, float("nan"))
            dev_acc = accuracy(gate.decide(dev_scores), dev_need) if len(dev_need) else fit_acc
            gate = cls(threshold, direction, fit_acc, dev_acc)
            if best is None or gate.dev_accuracy > best.dev_accuracy:
                best = gate
        assert best is not None
        return best


def split_dev(n: int, dev_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (fit, dev) index arrays over ``range(n)``, both sorted."""
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_dev = int(round(n * dev_fraction))
    return np.sort(order[n_dev:]), np.sort(order[:n_dev])


def _search(scores: np.ndarray, need: np.ndarray, direction: int, n_thresholds: int
            ) -> tuple[float, float]:
    finite = np.isfinite(scores)
    if not finite.any():
        return float("inf") * direction, float(np.mean(need))
    low, high = float(scores[finite].min()), float(scores[finite].max())
    best_t, best_acc = low, -1.0
    for t in np.linspace(low, high, n_thresholds):
        decision = (direction * scores >= direction * t) | np.isnan(scores)
        acc = float(np.mean(decision == need))
        if acc > best_acc:
            best_t, best_acc = float(t), acc
    return best_t, best_acc
