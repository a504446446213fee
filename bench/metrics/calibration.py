"""Calibration of a gate's predicted P(needs retrieval): ECE, Brier score, reliability bins.

Only gates that output probabilities (the classifier gates) have these; the
threshold gate's are NaN.
"""
from __future__ import annotations

import numpy as np

__all__ = ["N_BINS", "brier_score", "expected_calibration_error", "reliability_bins"]

#: Equal-width bins of [0, 1].
N_BINS = 10


def _labels_and_probability(need, probability) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(need).astype(np.float64)
    p = np.asarray(probability, dtype=np.float64)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"need and probability must be 1-D of equal length, "
                         f"got shapes {y.shape} and {p.shape}")
    if y.size == 0:
        raise ValueError("no questions")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("probability must lie in [0, 1] (and not be NaN)")
    return y, p


def bin_index(probability: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """``min(floor(n_bins * p), n_bins - 1)``: bins [0, .1), [.1, .2), …, [.9, 1].

    Computed from ``n_bins * p`` rather than against ``linspace`` edges, whose
    floating-point values (0.30000000000000004) would move p = 0.3 down a bin.
    """
    return np.minimum(np.floor(n_bins * np.asarray(probability)).astype(int), n_bins - 1)


def reliability_bins(need, probability, n_bins: int = N_BINS) -> dict[str, list]:
    """Mean predicted probability, observed need rate and count per non-empty bin.

    Returns
    -------
    dict
        ``{"confidence": [...], "frequency": [...], "count": [...]}``, one
        entry per non-empty bin in increasing order (empty bins are left out,
        so every value is a number).
    """
    y, p = _labels_and_probability(need, probability)
    index = bin_index(p, n_bins)
    count = np.bincount(index, minlength=n_bins)
    filled = count > 0
    confidence = np.bincount(index, weights=p, minlength=n_bins)[filled] / count[filled]
    frequency = np.bincount(index, weights=y, minlength=n_bins)[filled] / count[filled]
    return {"confidence": confidence.tolist(), "frequency": frequency.tolist(),
            "count": count[filled].tolist()}


def expected_calibration_error(need, probability, n_bins: int = N_BINS) -> float:
    """ECE = sum over bins of (bin size / n) * |mean predicted - observed need rate|."""
    bins = reliability_bins(need, probability, n_bins)
    n = sum(bins["count"])
    return float(sum(c * abs(conf - freq) for conf, freq, c in
                     zip(bins["confidence"], bins["frequency"], bins["count"])) / n)


def brier_score(need, probability) -> float:
    """Mean of (p - need)^2."""
    y, p = _labels_and_probability(need, probability)
    return float(np.mean((p - y) ** 2))
