"""The threshold-free operating curve of an estimator: In-Accuracy against RC."""
from __future__ import annotations

import numpy as np

__all__ = ["operating_curve", "uncertainty_order"]


def uncertainty_order(score) -> np.ndarray:
    """Question indices, most uncertain first.

    Sorted by score descending; NaN scores first (an undefined score counts as
    most uncertain, as for the gates); ties keep question order (lower index
    first), so the curve is a fixed function of the test file.
    """
    s = np.asarray(score, dtype=np.float64)
    nan_first = np.where(np.isnan(s), -np.inf, -s)
    return np.argsort(nan_first, kind="stable")


def operating_curve(never_in_accuracy, always_in_accuracy, score, decimals: int = 4
                    ) -> dict[str, list[float]]:
    """In-Accuracy when retrieving for the k most uncertain questions, k = 0..n.

    Parameters
    ----------
    never_in_accuracy, always_in_accuracy : array_like of shape (n,)
        Per-question In-Accuracy of the closed-book and the retrieval answer.
    score : array_like of shape (n,)
        Raw estimator score on the same questions (NaN allowed).

    Returns
    -------
    dict
        ``{"rc": [0, 1/n, …, 1], "in_accuracy": [...]}``, n + 1 points rounded
        to ``decimals``; point k replays the Always answer on the first k
        questions of :func:`uncertainty_order` and the Never answer elsewhere
        (k = 0 is Never RAG, k = n is Always RAG).
    """
    never = np.asarray(never_in_accuracy, dtype=np.float64)
    always = np.asarray(always_in_accuracy, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if not (never.ndim == 1 and never.shape == always.shape == s.shape) or never.size == 0:
        raise ValueError(f"need equal non-empty 1-D arrays, got shapes {never.shape}, "
                         f"{always.shape} and {s.shape}")
    n = never.size
    gain = (always - never)[uncertainty_order(s)]
    in_accuracy = never.mean() + np.concatenate([[0.0], np.cumsum(gain)]) / n
    rc = np.arange(n + 1) / n
    return {"rc": np.round(rc, decimals).tolist(),
            "in_accuracy": np.round(in_accuracy, decimals).tolist()}
