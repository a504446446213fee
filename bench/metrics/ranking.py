"""Score-based self-knowledge metrics: prediction–rejection ratio and AUPRC.

Both read a continuous score (higher = more uncertain = more need for
retrieval) against the need label ``y = 1 - InAcc(Never)``. The score must be
free of NaN; the caller applies its NaN policy first (arbench ranks an
undefined score above every finite one).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

__all__ = ["auprc", "prediction_rejection_ratio", "rejection_area"]


def _labels_and_score(need, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(need)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"need and score must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"score has {s.size} values but need has {y.size}")
    if y.size == 0:
        raise ValueError("no questions")
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        raise ValueError(f"score has {n_nan} NaN value(s) of {s.size}; "
                         "apply a NaN policy before scoring")
    return y.astype(bool), s


def rejection_area(quality: np.ndarray, uncertainty: np.ndarray) -> float:
    """Area under the rejection curve, ties in ``uncertainty`` averaged over their orders.

    The most uncertain answers are rejected first. For k = 0, 1, …, n − 1
    rejected answers (rejection rate k/n) the curve is the mean quality of the
    n − k retained ones; the area is the left Riemann sum with step 1/n::

        AR = (1/n) * sum_{k=0}^{n-1} mean(quality of the n - k least uncertain)

    (the rate-1 point, with nothing retained, is not part of the sum; this is
    lm-polygraph's discretisation). Questions with equal uncertainty are in
    no meaningful order, so AR is the expectation over all their orders:
    since the retained count is fixed at each k, that equals replacing each
    question's quality by the mean quality of its tie group.
    """
    quality = np.asarray(quality, dtype=np.float64)
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    values, group = np.unique(uncertainty, return_inverse=True)
    group_mean = np.bincount(group, weights=quality) / np.bincount(group)
    # Least uncertain first: the n - k retained answers are a prefix of this order.
    retained_first = group_mean[group[np.argsort(uncertainty, kind="stable")]]
    n = quality.size
    return float(np.mean(np.cumsum(retained_first) / np.arange(1, n + 1)))


def prediction_rejection_ratio(need, score) -> float:
    """PRR (Malinin et al.): how much of the oracle's rejection gain the score achieves.

    Quality q_i = 1 - need_i (the Never answer is right by In-Accuracy).
    PRR = (AR_score - AR_random) / (AR_oracle - AR_random), with the areas of
    :func:`rejection_area`: AR_score rejects by ``score`` (ties averaged),
    AR_oracle rejects the wrong answers first, and AR_random = mean(q) (the
    expected curve of a random order is flat at mean(q)). 1 is a perfect
    ranking, 0 is random, negative is worse than random.

    Returns
    -------
    float
        NaN when the oracle equals random, i.e. all questions have the same
        label.
    """
    y, s = _labels_and_score(need, score)
    quality = (~y).astype(np.float64)
    random = float(quality.mean())
    # The oracle's uncertainty is the label itself: wrong answers (need 1) go first.
    oracle = rejection_area(quality, y.astype(np.float64))
    if oracle - random <= 0:
        return float("nan")
    return (rejection_area(quality, s) - random) / (oracle - random)


def auprc(need, score) -> float:
    """Area under the precision–recall curve of ``need`` against ``score``.

    ``sklearn.metrics.average_precision_score`` (step-wise, no interpolation;
    tied scores form one threshold). NaN when ``need`` has a single class, as
    for ROC-AUC.
    """
    y, s = _labels_and_score(need, score)
    if y.all() or not y.any():
        return float("nan")
    return float(average_precision_score(y, s))
