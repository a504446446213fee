"""The operating curve: In-Accuracy when retrieving for the k most uncertain questions."""
from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation import evaluate_dataset
from bench.metrics import operating_curve, uncertainty_order
from tests.test_evaluation import make_train, scored_test


def test_uncertainty_order_nan_first_then_descending_ties_by_index():
    # NaN (q2) first; the tie at 0.9 keeps index order (q1 before q3); then 0.2 (q0).
    assert uncertainty_order([0.2, 0.9, np.nan, 0.9]).tolist() == [2, 1, 3, 0]


def test_operating_curve_four_questions():
    # Never In-Acc [1, 0, 1, 0], Always [0, 1, 1, 1]; order q2, q1, q3, q0 (above).
    # Gains Always - Never in that order: q2 0, q1 +1, q3 +1, q0 -1.
    # k = 0: Never = 2/4 = .5; k = 1: .5; k = 2: .75; k = 3: 1.0; k = 4: Always = .75.
    curve = operating_curve([1, 0, 1, 0], [0, 1, 1, 1], [0.2, 0.9, np.nan, 0.9])
    assert curve == {"rc": [0.0, 0.25, 0.5, 0.75, 1.0],
                     "in_accuracy": [0.5, 0.5, 0.75, 1.0, 0.75]}


def test_operating_curve_rounds_to_four_decimals():
    # n = 3: rc 1/3 -> 0.3333; Never [0, 0, 0], Always [1, 1, 0], score [3, 2, 1]:
    # 0, 1/3, 2/3, 2/3 -> 0.0, 0.3333, 0.6667, 0.6667.
    curve = operating_curve([0, 0, 0], [1, 1, 0], [3.0, 2.0, 1.0])
    assert curve == {"rc": [0.0, 0.3333, 0.6667, 1.0],
                     "in_accuracy": [0.0, 0.3333, 0.6667, 0.6667]}


def test_operating_curve_validates():
    with pytest.raises(ValueError, match="equal non-empty"):
        operating_curve([1, 0], [1, 0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="equal non-empty"):
        operating_curve([], [], [])


def test_evaluate_dataset_curves():
    # The toy split of tests/test_evaluation.py: Never In-Acc [1, 0, 1, 0], Always
    # [0, 1, 1, 0]; "unc" test scores [0.2, 0.9, 0.95, NaN] -> order q3, q2, q1, q0;
    # gains 0, 0, +1, -1 -> .5, .5, .5, .75, .5. "conf" = -unc: order q3 (NaN), q0
    # (-0.2), q1 (-0.9), q2 (-0.95); gains 0, -1, +1, 0 -> .5, .5, .25, .5, .5.
    # Both end points equal the Never and Always rows (0.5 each).
    result = evaluate_dataset(scored_test(), make_train(), dev_fraction=0.0)
    assert result["curves"] == {
        "unc": {"rc": [0.0, 0.25, 0.5, 0.75, 1.0], "in_accuracy": [0.5, 0.5, 0.5, 0.75, 0.5]},
        "conf": {"rc": [0.0, 0.25, 0.5, 0.75, 1.0], "in_accuracy": [0.5, 0.5, 0.25, 0.5, 0.5]},
    }
    assert result["curves"]["unc"]["in_accuracy"][0] == result["rows"]["never"]["in_accuracy"]
    assert result["curves"]["unc"]["in_accuracy"][-1] == result["rows"]["always"]["in_accuracy"]
