"""Threshold gates: the dev split, the threshold search, the direction choice, leak-freedom.

Expected values are worked out by hand in the comments. The grid is always
``linspace(low, high, 100)`` over the fit part's finite scores, so grid point k
is ``low + k * (high - low) / 99``; the first grid point reaching the best fit
accuracy wins (strict ``>`` in the search).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.evaluation import SplitAnswers, evaluate_dataset
from bench.gates import ThresholdGate, split_dev

T, F = True, False


def grid(low: float, high: float, k: int) -> float:
    """Grid point k of the gate's 100-point linspace (exactly what the gate evaluates)."""
    return float(np.linspace(low, high, 100)[k])


# --------------------------------------------------------------------------- #
# split_dev
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("n, fraction, n_dev", [
    (10, 0.2, 2),    # 10 * 0.2 = 2
    (9, 0.25, 2),    # 2.25 -> 2
    (7, 0.3, 2),     # 2.1  -> 2
    (6, 0.2, 1),     # 1.2  -> 1
    (3, 0.2, 1),     # 0.6  -> 1
    (500, 0.2, 100),
    (10, 0.0, 0),
    (1, 0.2, 0),     # 0.2  -> 0
])
def test_split_dev_sizes_disjoint_cover_sorted(n, fraction, n_dev):
    fit, dev = split_dev(n, fraction, seed=3)
    assert len(dev) == n_dev == round(n * fraction)
    assert len(fit) == n - n_dev
    assert set(fit).isdisjoint(dev)
    assert sorted(set(fit) | set(dev)) == list(range(n))
    assert list(fit) == sorted(fit) and list(dev) == sorted(dev)


def test_split_dev_is_seeded():
    a_fit, a_dev = split_dev(50, 0.2, seed=0)
    b_fit, b_dev = split_dev(50, 0.2, seed=0)
    assert np.array_equal(a_fit, b_fit) and np.array_equal(a_dev, b_dev)
    # Different seeds give different dev sets (10 of 50: a collision is ~1e-10 likely,
    # and the values are fixed by numpy's seeded generator anyway).
    devs = {tuple(split_dev(50, 0.2, seed=s)[1]) for s in range(5)}
    assert len(devs) == 5


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_dev_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="dev_fraction"):
        split_dev(10, fraction, seed=0)


# --------------------------------------------------------------------------- #
# decide
# --------------------------------------------------------------------------- #
def test_decide_direction_and_nan():
    scores = [0.2, 0.5, 0.9, math.nan, math.inf, -math.inf]
    up = ThresholdGate(0.5, 1, 1.0, 1.0)
    # +1: retrieve iff s >= 0.5; NaN retrieves; +inf >= 0.5; -inf < 0.5
    assert up.decide(scores).tolist() == [F, T, T, T, T, F]
    down = ThresholdGate(0.5, -1, 1.0, 1.0)
    # -1: retrieve iff -s >= -0.5, i.e. s <= 0.5; NaN still retrieves
    assert down.decide(scores).tolist() == [T, T, F, T, F, T]


def test_decide_all_nan_retrieves():
    gate = ThresholdGate(0.0, 1, 0.5, 0.5)
    assert gate.decide(np.full(3, np.nan)).tolist() == [T, T, T]


def test_to_dict():
    assert ThresholdGate(0.25, -1, 0.75, 0.5).to_dict() == {
        "threshold": 0.25, "direction": -1, "fit_accuracy": 0.75, "dev_accuracy": 0.5}


# --------------------------------------------------------------------------- #
# fit: threshold search (no dev part, so dev accuracy = fit accuracy)
# --------------------------------------------------------------------------- #
def test_fit_threshold_first_maximiser():
    # Ten scores 0..9 (given out of order) with need labels by score:
    #   score: 0 1 2 3 4 5 6 7 8 9
    #   need:  F F F T F T T T T T
    # Grid: linspace(0, 9, 100), point k = k/11.
    # Direction +1 (retrieve iff s >= t):
    #   t in (2, 3]: retrieve 3..9, wrong only on 4  -> 9/10
    #   t in (4, 5]: retrieve 5..9, wrong only on 3  -> 9/10
    #   t <= 2 retrieves 2 and 4 (both F)            -> at most 8/10
    #   no t gets 10/10 (3 is T but 4 is F).
    #   First grid point above 2: k/11 > 2 -> k = 23, t = 23/11 = 2.0909...
    # Direction -1 (retrieve iff s <= t): best is t = 9 (all retrieve) with 6/10,
    #   so +1 wins with fit accuracy 0.9.
    order = [7, 2, 9, 0, 4, 5, 1, 8, 3, 6]
    need_by_score = [F, F, F, T, F, T, T, T, T, T]
    scores = np.array(order, dtype=float)
    need = np.array([need_by_score[s] for s in order])
    gate = ThresholdGate.fit(scores, need, dev_fraction=0.0)
    assert gate.threshold == pytest.approx(23 / 11, abs=1e-12)
    assert gate.threshold == grid(0, 9, 23)
    assert gate.direction == 1
    assert gate.fit_accuracy == pytest.approx(0.9)
    assert gate.dev_accuracy == pytest.approx(0.9)   # empty dev part: dev = fit accuracy
    # The threshold is one grid point past 2: the previous point (k = 22, t = 2) is worse.
    assert np.mean(ThresholdGate(grid(0, 9, 22), 1, 0, 0).decide(scores) == need) == 0.8


def test_fit_nan_scores_count_as_retrieve_and_stay_out_of_the_grid():
    # scores [nan, 0, 1, 2, 3], need [T, F, F, T, T]; grid over finite scores only:
    # linspace(0, 3, 100), point k = k/33.
    # +1: t in (1, 2] -> retrieve nan, 2, 3; skip 0, 1 -> 5/5. First k/33 > 1 -> k = 34.
    # -1: NaN always retrieves; best is all-retrieve (t = 3) with 3/5. +1 wins.
    scores = np.array([np.nan, 0, 1, 2, 3])
    need = np.array([T, F, F, T, T])
    gate = ThresholdGate.fit(scores, need, dev_fraction=0.0)
    assert gate.threshold == pytest.approx(34 / 33, abs=1e-12)
    assert gate.direction == 1
    assert gate.fit_accuracy == 1.0 and gate.dev_accuracy == 1.0


def test_fit_reversed_scores_choose_direction_minus_one():
    # The same labels with negated scores: -9..0, need T exactly for s <= -3 except -4.
    #   score: -9 -8 -7 -6 -5 -4 -3 -2 -1  0
    #   need:   T  T  T  T  T  F  T  F  F  F
    # Grid linspace(-9, 0, 100), point k = -9 + k/11.
    # -1 (retrieve iff s <= t): t in [-3, -2): 9/10 (wrong on -4); t in [-5, -4): 9/10
    #   (wrong on -3). First grid point >= -5: -9 + k/11 >= -5 -> k >= 44; k = 44 is
    #   t = -5 exactly in real arithmetic; in floats it may land a hair below -5,
    #   in which case k = 45 wins. Either way t is in [-5, -4) with accuracy 0.9.
    # +1 (retrieve iff s >= t): best is all-retrieve (t = -9) with 6/10.
    # Dev part empty, so dev accuracies equal fit accuracies and -1 (0.9) beats +1 (0.6).
    scores = -np.arange(10, dtype=float)[::-1]          # -9 .. 0
    need = np.array([T, T, T, T, T, F, T, F, F, F])
    gate = ThresholdGate.fit(scores, need, dev_fraction=0.0)
    assert gate.direction == -1
    assert -5.0 - 1e-12 <= gate.threshold < -4.0
    k44 = grid(-9, 0, 44)
    assert gate.threshold == (k44 if k44 >= -5.0 else grid(-9, 0, 45))
    assert gate.fit_accuracy == pytest.approx(0.9)
    assert gate.dev_accuracy == pytest.approx(0.9)


def test_fit_all_nan_scores_retrieve_everything():
    # No finite fit score: the threshold is +inf (direction +1; the -1 gate ties and
    # ties keep +1), fit accuracy = share of need (every NaN retrieves) = 2/4.
    gate = ThresholdGate.fit(np.full(4, np.nan), np.array([T, F, T, F]), dev_fraction=0.0)
    assert gate.threshold == math.inf and gate.direction == 1
    assert gate.fit_accuracy == 0.5 and gate.dev_accuracy == 0.5
    assert gate.decide(np.array([np.nan, 1e9])).tolist() == [T, F]


# --------------------------------------------------------------------------- #
# fit: direction chosen on dev
# --------------------------------------------------------------------------- #
def _fit_dev_case(dev_scores, dev_need):
    """10 rows; the 8 fit rows (from split_dev(10, 0.2, 0)) get scores 1..8 with
    need F F F F T T T T; the 2 dev rows get ``dev_scores`` / ``dev_need``."""
    fit_idx, dev_idx = split_dev(10, 0.2, seed=0)
    assert len(fit_idx) == 8 and len(dev_idx) == 2
    scores = np.empty(10)
    need = np.empty(10, dtype=bool)
    scores[fit_idx] = np.arange(1, 9)
    need[fit_idx] = [F, F, F, F, T, T, T, T]
    scores[dev_idx] = dev_scores
    need[dev_idx] = dev_need
    return scores, need


# Fit part, worked once for both tests below. Grid linspace(1, 8, 100), k -> 1 + 7k/99.
#   +1: t in (4, 5] separates perfectly (8/8). First point above 4:
#       7k/99 > 3 -> k > 42.43 -> k = 43, t = 1 + 301/99 = 400/99 = 4.0404...
#   -1 (retrieve iff s <= t): for t in [j, j+1) it retrieves 1..j; correct =
#       4 - j (j <= 4) or j - 4 (j >= 5): at most 4/8, reached only at j = 8,
#       i.e. the last grid point t = 8.
UP_T = 400 / 99


def test_fit_reversed_direction_wins_on_dev():
    # Dev rows: (score 0, need T) and (score 9, need F).
    #   +1 gate (t = 4.04): 0 -> skip (wrong), 9 -> retrieve (wrong): dev 0/2
    #   -1 gate (t = 8):    0 <= 8 retrieve (right), 9 > 8 skip (right): dev 2/2
    # so -1 wins although its fit accuracy (0.5) is worse than +1's (1.0).
    scores, need = _fit_dev_case([0.0, 9.0], [T, F])
    gate = ThresholdGate.fit(scores, need, dev_fraction=0.2, seed=0)
    assert gate == ThresholdGate(threshold=8.0, direction=-1, fit_accuracy=0.5,
                                 dev_accuracy=1.0)


def test_fit_dev_tie_keeps_plus_one():
    # Dev rows: (0, need T) and (9, need T).
    #   +1: 0 skip (wrong), 9 retrieve (right): 1/2
    #   -1: 0 retrieve (right), 9 skip (wrong): 1/2  -> tie, +1 kept.
    scores, need = _fit_dev_case([0.0, 9.0], [T, T])
    gate = ThresholdGate.fit(scores, need, dev_fraction=0.2, seed=0)
    assert gate.direction == 1
    assert gate.threshold == pytest.approx(UP_T, abs=1e-12)
    assert gate.threshold == grid(1, 8, 43)
    assert gate.fit_accuracy == 1.0 and gate.dev_accuracy == 0.5


def test_fit_dev_rows_do_not_move_the_threshold():
    # Dev scores far outside the fit range must not widen the grid.
    scores, need = _fit_dev_case([-100.0, 100.0], [T, T])
    gate = ThresholdGate.fit(scores, need, dev_fraction=0.2, seed=0)
    # The grid is still linspace(1, 8, 100) of the fit part.
    # +1: -100 skip (wrong), 100 retrieve (right) = 1/2; -1 (t = 8): -100 retrieve (right),
    # 100 skip (wrong) = 1/2. Tie keeps +1 at 400/99.
    assert gate.direction == 1 and gate.threshold == pytest.approx(UP_T, abs=1e-12)


def test_fit_is_deterministic_given_seed():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=40)
    need = rng.random(40) < 0.5
    assert ThresholdGate.fit(scores, need, seed=1) == ThresholdGate.fit(scores, need, seed=1)


def test_fit_validates_input():
    with pytest.raises(ValueError, match="equal length"):
        ThresholdGate.fit(np.zeros(3), np.zeros(4, bool))
    with pytest.raises(ValueError, match="1-D"):
        ThresholdGate.fit(np.zeros((2, 2)), np.zeros((2, 2), bool))
    # 2 rows with dev_fraction 0.8: round(1.6) = 2 dev rows, nothing left to fit.
    with pytest.raises(ValueError, match="no rows left"):
        ThresholdGate.fit(np.array([0.1, 0.2]), np.array([T, F]), dev_fraction=0.8)


# --------------------------------------------------------------------------- #
# Leak-freedom: gates are fit from train only
# --------------------------------------------------------------------------- #
def _synthetic(seed: int, n: int, prefix: str) -> SplitAnswers:
    """Questions whose Never answer is right about half the time; scores are a noisy
    function of whether it is wrong (so the gate has something to learn)."""
    rng = np.random.default_rng(seed)
    golds = [[f"{prefix}{i} answer"] for i in range(n)]
    right = rng.random(n) < 0.5
    never = [f"{prefix}{i} answer" if r else "no idea" for i, r in enumerate(right)]
    always = [f"{prefix}{i} answer" if rng.random() < 0.7 else "wrong" for i in range(n)]
    scores = {"u": np.where(right, 0.0, 1.0) + rng.normal(0, 0.6, n),
              "v": rng.normal(size=n)}
    return SplitAnswers(golds=golds, never=never, always=always, scores=scores)


def test_gates_ignore_test_labels():
    train = _synthetic(1, 60, "train")
    test = _synthetic(2, 40, "test")
    clean = evaluate_dataset(test, train, dev_fraction=0.2, seed=0)
    # Poison every test gold: the labels (need = 1 - InAcc(Never)) flip to all-need.
    poisoned_test = SplitAnswers(golds=[["zzz poisoned"]] * 40, never=test.never,
                                 always=test.always, scores=test.scores)
    poisoned = evaluate_dataset(poisoned_test, train, dev_fraction=0.2, seed=0)
    # Gate parameters are unchanged...
    assert poisoned["gates"] == clean["gates"]
    assert set(clean["gates"]) == {"u", "v"}
    # ...so are the decisions they make on the (unchanged) test scores...
    for name in ("u", "v"):
        assert poisoned["rows"][name]["rc"] == clean["rows"][name]["rc"]
    # ...while every test metric that reads the labels changed.
    assert clean["need_rate_test"] < 1.0 and poisoned["need_rate_test"] == 1.0
    assert clean["rows"]["never"]["in_accuracy"] > 0
    assert poisoned["rows"]["never"]["in_accuracy"] == 0.0
    assert poisoned["rows"]["u"]["in_accuracy"] == 0.0
    assert poisoned["rows"]["u"]["accuracy"] != clean["rows"]["u"]["accuracy"]
    # Shuffling the test rows does not touch the gates either.
    perm = np.random.default_rng(0).permutation(40)
    shuffled = SplitAnswers(golds=[test.golds[i] for i in perm],
                            never=[test.never[i] for i in perm],
                            always=[test.always[i] for i in perm],
                            scores={k: v[perm] for k, v in test.scores.items()})
    assert evaluate_dataset(shuffled, train, 0.2, 0)["gates"] == clean["gates"]


def test_gates_do_follow_train_labels():
    # The control for the test above: poisoning *train* golds does change the gates.
    train = _synthetic(1, 60, "train")
    test = _synthetic(2, 40, "test")
    clean = evaluate_dataset(test, train, dev_fraction=0.2, seed=0)
    poisoned_train = SplitAnswers(golds=[["zzz poisoned"]] * 60, never=train.never,
                                  always=train.always, scores=train.scores)
    poisoned = evaluate_dataset(test, poisoned_train, dev_fraction=0.2, seed=0)
    assert poisoned["gates"] != clean["gates"]
    # All train questions now need retrieval: the best gate retrieves everything.
    for gate in poisoned["gates"].values():
        assert gate["fit_accuracy"] == 1.0 and gate["dev_accuracy"] == 1.0
