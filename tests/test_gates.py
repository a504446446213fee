"""Gates: the dev split, the threshold search and direction choice, the four classifier
gates, leak-freedom.

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
from bench.gates import (
    FeatureMap,
    KnnGate,
    LogisticGate,
    MlpGate,
    ThresholdGate,
    TreeGate,
    split_dev,
)

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
    # All train questions now need retrieval: every kind retrieves everything (the
    # classifiers see one class and predict it), so all tie at 1.0 and the simplest,
    # the threshold, is kept.
    for selection in poisoned["gates"].values():
        assert selection["chosen"] == "threshold"
        for gate in selection["candidates"].values():
            assert gate["fit_accuracy"] == 1.0 and gate["dev_accuracy"] == 1.0
        for kind in ("logistic", "tree", "knn", "mlp"):
            assert selection["candidates"][kind]["constant"] is True


# --------------------------------------------------------------------------- #
# Classifier gates: the feature map, each model on a hand-made fit part
# --------------------------------------------------------------------------- #
EMPTY = np.array([])
NO_LABELS = np.array([], dtype=bool)


def fit_only(cls, scores, need, seed=0):
    """Fit a kind on ``scores``/``need`` with an empty dev part (dev = fit accuracy)."""
    return cls.fit_parts(np.asarray(scores, float), np.asarray(need, bool), EMPTY, NO_LABELS,
                         seed)


def test_feature_map_imputes_above_the_fit_range_and_standardises():
    # Finite fit scores 0, 1, 2: span 2, so NaN and +inf -> 2 + 2 = 4, -inf -> 0 - 2 = -2.
    # Imputed column [4, 0, 1, 2, 4, -2]: mean 9/6 = 1.5; deviations 2.5, -1.5, -.5, .5,
    # 2.5, -3.5; squares sum 6.25 + 2.25 + .25 + .25 + 6.25 + 12.25 = 27.5; std sqrt(27.5/6).
    fm = FeatureMap.fit(np.array([np.nan, 0, 1, 2, np.inf, -np.inf]), standardise=True)
    assert (fm.high_fill, fm.low_fill, fm.mean) == (4.0, -2.0, 1.5)
    assert fm.scale == pytest.approx(math.sqrt(27.5 / 6), abs=1e-15)
    column = fm.transform(np.array([np.nan, 4.0, -np.inf, 1.5]))
    assert column.shape == (4, 1)
    assert column[:, 0].tolist() == pytest.approx([2.5 / fm.scale, 2.5 / fm.scale,
                                                   -3.5 / fm.scale, 0.0])
    # Not standardised (the tree): imputation only, mean 0, scale 1.
    raw = FeatureMap.fit(np.array([np.nan, 0, 1, 2]), standardise=False)
    assert (raw.high_fill, raw.low_fill, raw.mean, raw.scale) == (4.0, -2.0, 0.0, 1.0)


def test_feature_map_degenerate_fit_parts():
    # Constant finite part: span taken as 1 -> fills 3 + 1 and 3 - 1; std 0 -> scale 1.
    fm = FeatureMap.fit(np.array([3.0, 3.0, 3.0]), standardise=True)
    assert (fm.high_fill, fm.low_fill, fm.mean, fm.scale) == (4.0, 2.0, 3.0, 1.0)
    # No finite score at all: both fills 0, column constant 0.
    fm = FeatureMap.fit(np.full(3, np.nan), standardise=True)
    assert (fm.high_fill, fm.low_fill, fm.mean, fm.scale) == (0.0, 0.0, 0.0, 1.0)


def test_logistic_gate_symmetric_example():
    # Fit scores 0, 1, 2, 3 with need F F T T: standardised by mean 1.5 and
    # std sqrt(1.25), i.e. x = [-3, -1, 1, 3] / sqrt(5). The data are symmetric about
    # x = 0, so the L2-penalised optimum has intercept 0 and P(need | score 1.5) = 1/2,
    # P(0) = 1 - P(3). sklearn minimises 0.5 w^2 + C * sum log-loss (C = 1): at the
    # optimum w + sum_i (p_i - y_i) x_i = 0 and sum_i (p_i - y_i) = 0.
    gate = fit_only(LogisticGate, [0, 1, 2, 3], [F, F, T, T])
    params = gate.to_dict()
    assert params["mean"] == 1.5 and params["scale"] == pytest.approx(math.sqrt(1.25))
    assert params["intercept"] == pytest.approx(0.0, abs=1e-6)
    assert params["coef"] > 0
    x = np.array([-3, -1, 1, 3]) / math.sqrt(5)
    p = 1 / (1 + np.exp(-(params["coef"] * x + params["intercept"])))
    y = np.array([0, 0, 1, 1])
    assert params["coef"] + np.sum((p - y) * x) == pytest.approx(0.0, abs=1e-3)
    prob = gate.probability(np.array([0.0, 1.5, 3.0]))
    assert prob[1] == pytest.approx(0.5, abs=1e-6)
    assert prob[0] == pytest.approx(1 - prob[2], abs=1e-6)
    assert prob.tolist() == pytest.approx(p[[0]].tolist() + [0.5] + p[[3]].tolist(), abs=1e-6)
    assert gate.decide(np.array([0, 1, 2, 3, np.nan])).tolist() == [F, F, T, T, T]
    assert gate.fit_accuracy == 1.0 and gate.dev_accuracy == 1.0
    assert gate.kind == "logistic"


def test_tree_gate_u_shape():
    # need T at both ends of 0..5: no threshold separates it, a depth-3 tree does.
    # sklearn splits at midpoints; the first best split on [T F F F F T] is 0.5 (the
    # mirror split 4.5 ties and comes later in the scan), then 4.5 on the right:
    # leaves {0} -> P 1, {1..4} -> P 0, {5} -> P 1, depth 2.
    gate = fit_only(TreeGate, np.arange(6.0), [T, F, F, F, F, T])
    params = gate.to_dict()
    assert params["splits"] == [0.5, 4.5]
    assert params["leaf_probability"] == [1.0, 0.0, 1.0]
    assert (params["max_depth"], params["depth"], params["n_leaves"]) == (3, 2, 3)
    # Unstandardised: splits read in score units; NaN -> 5 + 5 = 10 -> right leaf.
    assert (params["mean"], params["scale"], params["high_fill"]) == (0.0, 1.0, 10.0)
    assert gate.decide(np.array([0.2, 2.5, 5.0, np.nan])).tolist() == [T, F, T, T]
    assert gate.probability(np.array([0.2, 2.5])).tolist() == [1.0, 0.0]
    assert gate.fit_accuracy == 1.0


def test_knn_gate_fifteen_neighbours():
    # Fit scores 0..19, need iff score >= 10; standardising keeps the neighbour order.
    # Query 19: the 15 nearest are 5..19, of which 10..19 need -> 10/15 = 2/3 -> retrieve.
    # Query 0: nearest 0..14, of which 10..14 need -> 5/15 = 1/3 -> skip.
    gate = fit_only(KnnGate, np.arange(20.0), np.arange(20) >= 10)
    assert gate.to_dict()["n_neighbors"] == 15 and gate.to_dict()["n_fit"] == 20
    assert gate.probability(np.array([19.0, 0.0])).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert gate.decide(np.array([19.0, 0.0])).tolist() == [T, F]


def test_knn_gate_caps_k_at_the_fit_size():
    # 6 fit rows: k = 6, every query sees the whole fit part: P = 2/6 everywhere.
    gate = fit_only(KnnGate, np.arange(6.0), [T, T, F, F, F, F])
    assert gate.to_dict()["n_neighbors"] == 6
    assert gate.probability(np.array([-5.0, 0.0, 50.0])).tolist() == pytest.approx([1 / 3] * 3)
    assert gate.decide(np.array([0.0])).tolist() == [F]
    # fit accuracy: predicts F everywhere -> 4/6.
    assert gate.fit_accuracy == pytest.approx(4 / 6)


def test_mlp_gate_is_seeded_and_fits_a_separable_set():
    scores = np.arange(10.0)
    need = scores >= 5
    a, b = fit_only(MlpGate, scores, need, seed=3), fit_only(MlpGate, scores, need, seed=3)
    assert a.to_dict() == b.to_dict()
    assert fit_only(MlpGate, scores, need, seed=4).to_dict()["weights_l1"] != \
        a.to_dict()["weights_l1"]
    assert a.to_dict()["hidden_layer_sizes"] == [100]
    assert 1 <= a.to_dict()["n_iter"] <= 500
    assert a.decide(scores).tolist() == need.tolist()
    prob = a.probability(np.array([0.0, 9.0]))
    assert 0 <= prob[0] < 0.5 < prob[1] <= 1


@pytest.mark.parametrize("cls", [LogisticGate, TreeGate, KnnGate, MlpGate])
@pytest.mark.parametrize("label", [T, F])
def test_one_class_fit_part_predicts_that_class(cls, label):
    gate = fit_only(cls, [0.1, 0.5, np.nan], [label] * 3)
    assert gate.decide(np.array([0.0, 9.0, np.nan])).tolist() == [label] * 3
    assert gate.probability(np.array([0.0, 9.0])).tolist() == [float(label)] * 2
    params = gate.to_dict()
    assert params["constant"] is label and params["fit_accuracy"] == 1.0


def test_classifier_dev_part_is_scored_not_fitted():
    # Fit part separable at 1.5 (need iff score >= 2); dev rows contradict it.
    # A fit on fit + dev would move the boundary; the fitted gate must not see dev.
    fit_scores, fit_need = np.array([0.0, 1, 2, 3]), np.array([F, F, T, T])
    dev_scores, dev_need = np.array([0.0, 3.0]), np.array([T, F])
    with_dev = TreeGate.fit_parts(fit_scores, fit_need, dev_scores, dev_need, 0)
    without = fit_only(TreeGate, fit_scores, fit_need)
    assert with_dev.to_dict()["splits"] == without.to_dict()["splits"] == [1.5]
    # Both dev rows are wrong for the fitted tree: dev accuracy 0.
    assert with_dev.fit_accuracy == 1.0 and with_dev.dev_accuracy == 0.0
