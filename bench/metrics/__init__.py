"""Metrics: answer quality (In-Accuracy, EM, F1) and self-knowledge of gates.

Definitions follow STUDY.md §4; see :mod:`bench.metrics.qa` and
:mod:`bench.metrics.self_knowledge` for the decisions on open points, and
:mod:`bench.metrics.ranking`, :mod:`bench.metrics.calibration` and
:mod:`bench.metrics.curves` for the metrics beyond the study (PRR, AUPRC,
ECE, Brier, reliability bins, operating curves).
"""

from bench.metrics.calibration import brier_score, expected_calibration_error, reliability_bins
from bench.metrics.curves import operating_curve, uncertainty_order
from bench.metrics.qa import (
    exact_match,
    f1,
    in_accuracy,
    normalize,
    score_answers,
    tokenize,
)
from bench.metrics.ranking import auprc, prediction_rejection_ratio
from bench.metrics.self_knowledge import (
    QA_KEYS,
    gate_row,
    need_retrieval_labels,
    reference_rows,
    self_knowledge,
)

__all__ = [
    "QA_KEYS",
    "auprc",
    "brier_score",
    "exact_match",
    "expected_calibration_error",
    "f1",
    "gate_row",
    "in_accuracy",
    "need_retrieval_labels",
    "normalize",
    "operating_curve",
    "prediction_rejection_ratio",
    "reference_rows",
    "reliability_bins",
    "score_answers",
    "self_knowledge",
    "tokenize",
    "uncertainty_order",
]
