"""PRR, AUPRC, ECE, Brier and reliability bins against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.metrics import (
    auprc,
    brier_score,
    expected_calibration_error,
    prediction_rejection_ratio,
    reliability_bins,
    self_knowledge,
)
from bench.metrics.calibration import bin_index
from bench.metrics.ranking import rejection_area

NEED = np.array([1, 0, 1, 0])
SCORE = np.array([0.9, 0.8, 0.3, 0.1])


# --------------------------------------------------------------------------- PRR
def test_prr_hand_example():
    # quality q = 1 - need = [0, 1, 0, 1]. Least uncertain first: scores 0.1, 0.3, 0.8,
    # 0.9 -> q [1, 0, 1, 0]. Retaining the m least uncertain (m = 4..1, i.e. rejecting
    # k = 0..3): means over prefixes m = 1..4: 1, 1/2, 2/3, 1/2 -> AR = (8/3)/4 = 2/3.
    # Random: mean q = 1/2. Oracle (wrong answers rejected first): q [1, 1, 0, 0] ->
    # 1, 1, 2/3, 1/2 -> AR = (19/6)/4 = 19/24.
    # PRR = (2/3 - 1/2) / (19/24 - 1/2) = (1/6) / (7/24) = 4/7.
    assert rejection_area(1.0 - NEED, SCORE) == pytest.approx(2 / 3)
    assert prediction_rejection_ratio(NEED, SCORE) == pytest.approx(4 / 7)


def test_prr_perfect_reversed_and_random_like():
    # Ranking the wrong answers first is the oracle: 1. Reversed: the curve is the
    # oracle's mirror q [0, 0, 1, 1] -> 0, 0, 1/3, 1/2 -> AR = (5/6)/4 = 5/24,
    # PRR = (5/24 - 12/24) / (7/24) = -1.
    assert prediction_rejection_ratio(NEED, NEED * 1.0) == pytest.approx(1.0)
    assert prediction_rejection_ratio(NEED, -NEED * 1.0) == pytest.approx(-1.0)
    # A constant score is one tie group: every q becomes the mean, AR = random, PRR 0.
    assert prediction_rejection_ratio(NEED, np.zeros(4)) == pytest.approx(0.0)


def test_prr_averages_over_tie_orders():
    # need [1, 0, 0, 1], scores [0.5, 0.5, 0.2, 0.9]: q = [0, 1, 1, 0].
    # The tie at 0.5 holds q 0 and 1; its two orders give, least uncertain first,
    #   [1, 0, 1, 0] -> 1 + 1/2 + 2/3 + 1/2 = 8/3     and
    #   [1, 1, 0, 0] -> 1 + 1   + 2/3 + 1/2 = 19/6;
    # their average 35/12 equals the group-mean rule [1, .5, .5, 0]: 1 + .75 + 2/3 + .5.
    # AR = 35/48; random 1/2; oracle 19/24 -> PRR = (35/48 - 24/48) / (38/48 - 24/48)
    # = 11/14. Either fixed tie order alone would give 4/7 or 1.
    need, score = np.array([1, 0, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])
    assert prediction_rejection_ratio(need, score) == pytest.approx(11 / 14)
    # Row order does not matter.
    perm = [2, 0, 3, 1]
    assert prediction_rejection_ratio(need[perm], score[perm]) == pytest.approx(11 / 14)


def test_prr_single_class_is_nan_and_nan_score_raises():
    assert math.isnan(prediction_rejection_ratio([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(prediction_rejection_ratio([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="1 NaN"):
        prediction_rejection_ratio(NEED, [0.1, np.nan, 0.2, 0.3])
    with pytest.raises(ValueError, match="score has 3 values"):
        prediction_rejection_ratio(NEED, [0.1, 0.2, 0.3])


# --------------------------------------------------------------------------- AUPRC
def test_auprc_hand_example():
    # Descending score: 0.9 (need) P 1 R 1/2; 0.8 (not) P 1/2 R 1/2; 0.3 (need)
    # P 2/3 R 1; AP = sum (R_k - R_{k-1}) P_k = 1/2 * 1 + 0 + 1/2 * 2/3 = 5/6.
    assert auprc(NEED, SCORE) == pytest.approx(5 / 6)


def test_auprc_ties_form_one_threshold():
    # need [1, 0, 1], scores [0.5, 0.5, 0.1]: the tied pair enters at once: P 1/2,
    # R 1/2; then 0.1: P 2/3, R 1. AP = 1/2 * 1/2 + 1/2 * 2/3 = 7/12.
    assert auprc([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(7 / 12)
    assert math.isnan(auprc([1, 1], [0.2, 0.1])) and math.isnan(auprc([0, 0], [0.2, 0.1]))


# --------------------------------------------------------------------------- calibration
P = np.array([0.05, 0.15, 0.12, 0.95, 0.55])
Y = np.array([0, 0, 1, 1, 0])


def test_reliability_bins_ece_brier_hand_example():
    # Bins floor(10 p): 0.05 -> 0; 0.15, 0.12 -> 1; 0.55 -> 5; 0.95 -> 9.
    #   bin 0: conf .05,  freq 0,   n 1 -> |gap| .05
    #   bin 1: conf .135, freq 1/2, n 2 -> |gap| .365
    #   bin 5: conf .55,  freq 0,   n 1 -> .55
    #   bin 9: conf .95,  freq 1,   n 1 -> .05
    # ECE = (.05 + 2 * .365 + .55 + .05) / 5 = 1.38 / 5 = 0.276
    # Brier = (.05² + .15² + .88² + .05² + .55²) / 5
    #       = (.0025 + .0225 + .7744 + .0025 + .3025) / 5 = 1.1044 / 5 = 0.22088
    bins = reliability_bins(Y, P)
    assert bins["count"] == [1, 2, 1, 1]
    assert bins["confidence"] == pytest.approx([0.05, 0.135, 0.55, 0.95])
    assert bins["frequency"] == pytest.approx([0.0, 0.5, 0.0, 1.0])
    assert expected_calibration_error(Y, P) == pytest.approx(0.276)
    assert brier_score(Y, P) == pytest.approx(0.22088)


def test_bin_edges():
    # Left-closed bins, the last one closed: 0.1 -> 1, 0.3 -> 3 (not 2, as a comparison
    # with linspace's 0.30000000000000004 would give), 0.7 -> 7, 0.999 -> 9, 1.0 -> 9.
    assert bin_index(np.array([0.0, 0.1, 0.3, 0.7, 0.999, 1.0])).tolist() == [0, 1, 3, 7, 9, 9]


def test_perfectly_calibrated_and_confident_wrong():
    # p in {0, 1} equal to the label: ECE 0, Brier 0. The opposite: ECE 1, Brier 1.
    y = np.array([1, 0, 1])
    assert expected_calibration_error(y, y * 1.0) == 0.0 and brier_score(y, y * 1.0) == 0.0
    assert expected_calibration_error(y, 1.0 - y) == 1.0 and brier_score(y, 1.0 - y) == 1.0


def test_calibration_validates():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1, 0], [0.5, 1.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1, 0], [0.5, np.nan])
    with pytest.raises(ValueError, match="equal length"):
        reliability_bins([1, 0], [0.5])


# --------------------------------------------------------------------------- self_knowledge
def test_self_knowledge_adds_prr_auprc_and_calibration_when_given():
    m = self_knowledge(NEED, [1, 0, 0, 0], SCORE, probability=[0.95, 0.55, 0.15, 0.05])
    assert m["prr"] == pytest.approx(4 / 7) and m["auprc"] == pytest.approx(5 / 6)
    # Bins: .95 -> 9 (need 1), .55 -> 5 (0), .15 -> 1 (1), .05 -> 0 (0):
    #   ECE = (.05 + .55 + .85 + .05) / 4 = 1.5 / 4 = .375
    #   Brier = (.05² + .55² + .85² + .05²) / 4 = (.0025 + .3025 + .7225 + .0025) / 4 = .2575
    assert m["ece"] == pytest.approx(0.375) and m["brier"] == pytest.approx(0.2575)
    without = self_knowledge(NEED, [1, 0, 0, 0])
    assert math.isnan(without["prr"]) and math.isnan(without["auprc"])
    assert "ece" not in without and "brier" not in without
