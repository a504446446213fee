"""Metrics: answer quality (In-Accuracy, EM, F1) and self-knowledge of gates.

Definitions follow STUDY.md §4; see :mod:`bench.metrics.qa` and
:mod:`bench.metrics.self_knowledge` for the decisions on open points.
"""

from bench.metrics.qa import (
    exact_match,
    f1,
    in_accuracy,
    normalize,
    score_answers,
    tokenize,
)
from bench.metrics.self_knowledge import (
    QA_KEYS,
    gate_row,
    need_retrieval_labels,
    reference_rows,
    self_knowledge,
)

__all__ = [
    "QA_KEYS",
    "exact_match",
    "f1",
    "gate_row",
    "in_accuracy",
    "need_retrieval_labels",
    "normalize",
    "reference_rows",
    "score_answers",
    "self_knowledge",
    "tokenize",
]
