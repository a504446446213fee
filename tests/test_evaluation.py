"""evaluate_dataset on a hand-scored toy split: reference rows, gate rows, costs, errors.

Every expected number is derived by hand in the comments below.

Test split (4 questions)
------------------------
norm(): lowercase, punctuation -> space, drop a/an/the, collapse spaces.

 q  | golds                               | Never answer   | InAcc EM  F1   | Always answer       | InAcc EM F1
----|-------------------------------------|----------------|----------------|---------------------|------------
 t0 | Paris                               | "Paris"        | 1     1   1    | "London"            | 0     0  0
 t1 | George Washington                   | "Washington"   | 0     0   2/3  | "George Washington" | 1     1  1
 t2 | 1969                                | "It was 1969." | 1     0   1/2  | "1969"              | 1     1  1
 t3 | blue whale, balaenoptera musculus   | "a shark"      | 0     0   0    | "whale"             | 0     0  2/3

* t1 Never F1: pred [washington], gold [george, washington]: P = 1, R = 1/2 -> 2/3.
  InAcc 0: the gold run "george washington" is not in [washington].
* t2 Never: norm = "it was 1969" contains the token 1969 (InAcc 1), EM 0,
  F1: P = 1/3, R = 1 -> 2*(1/3)/(4/3) = 1/2.
* t3 Never: norm("a shark") = "shark": nothing matches.
* t3 Always: [whale] vs [blue, whale]: InAcc 0 (needs both tokens), F1 2/3.

need = 1 - InAcc(Never) = [F, T, F, T]  (need rate 0.5)

Never : InAcc 2/4 = 0.5, EM 1/4 = 0.25, F1 (1 + 2/3 + 1/2 + 0)/4 = 13/24, RC 0, LMC 1
Always: InAcc 2/4 = 0.5, EM 2/4 = 0.5,  F1 (0 + 1 + 1 + 2/3)/4 = 2/3,   RC 1, LMC 1
Ideal : retrieve t1, t3 -> per-question (t0 N, t1 A, t2 N, t3 A):
        InAcc [1,1,1,0] = 0.75 (= mean(Never ok or Always ok)), EM [1,1,0,0] = 0.5,
        F1 [1, 1, 1/2, 2/3] -> (19/6)/4 = 19/24, RC 0.5, LMC 1.5

Train split (6 questions), gate fit with dev_fraction 0 (fit part = all 6)
-------------------------------------------------------------------------
 r  | gold        | Never answer          | InAcc | need | "unc" | "conf" (= -unc)
 r0 | Tokyo       | "Tokyo"               | 1     | F    | 0.1   | -0.1
 r1 | Mars        | "Venus"               | 0     | T    | 0.8   | -0.8
 r2 | Shakespeare | "William Shakespeare" | 1     | F    | 0.3   | -0.3
 r3 | oxygen      | "hydrogen"            | 0     | T    | 0.6   | -0.6
 r4 | 7           | "seven"               | 0     | T    | 0.4   | -0.4
 r5 | Nile        | "The Nile river"      | 1     | F    | 0.2   | -0.2

"unc": need is T exactly for scores >= 0.4. Grid linspace(0.1, 0.8, 100),
point k = 0.1 + 0.7k/99. +1 separates perfectly for t in (0.3, 0.4]:
0.7k/99 > 0.2 -> k > 28.29 -> k = 29, t = 0.1 + 20.3/99 = 0.30505...
(-1 reaches at most 3/6.) Gate: t = 0.30505, direction +1, fit = dev = 1.0.

"conf": need is T exactly for scores <= -0.4. Grid linspace(-0.8, -0.1, 100),
point k = -0.8 + 0.7k/99. -1 separates perfectly for t in [-0.4, -0.3): first
point >= -0.4: 0.7k/99 >= 0.4 -> k >= 56.57 -> k = 57, t = -0.8 + 39.9/99 = -0.39697.
+1 reaches at most 3/6 (all retrieve). Gate: t = -0.39697, direction -1, accuracy 1.0.

Test scores
-----------
"unc"  = [0.2, 0.9, 0.95, NaN]    -> s >= 0.30505 or NaN -> decision [F, T, T, T]
"conf" = [-0.2, -0.9, -0.95, NaN] -> s <= -0.39697 or NaN -> decision [F, T, T, T]

Replay of [F, T, T, T] (t0 N, t1 A, t2 A, t3 A):
  InAcc [1,1,1,0] = 0.75, EM [1,1,1,0] = 0.75, F1 [1,1,1,2/3] = (11/3)/4 = 11/12,
  RC 3/4 = 0.75, LMC 1.75.
Self-knowledge against need [F, T, F, T]:
  accuracy: t0 ok, t1 ok, t2 wrong (retrieved, not needed), t3 ok -> 0.75
  over-confidence (need, skipped): 0; under-confidence (not needed, retrieved): 1/4.
ROC-AUC of "unc": NaN ranks above every finite score (max finite + 1 = 1.95):
  scores [0.2, 0.9, 0.95, 1.95]; positives {0.9, 1.95}, negatives {0.2, 0.95}:
  pairs (0.9>0.2 yes) (0.9>0.95 no) (1.95>0.2 yes) (1.95>0.95 yes) -> 3/4.
Spearman of "unc": score ranks [1,2,3,4], need ranks [1.5,3.5,1.5,3.5];
  centred [-1.5,-.5,.5,1.5] . [-1,1,-1,1] = 2; norms sqrt(5), sqrt(4) -> 2/sqrt(20) = 1/sqrt(5).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.evaluation import COST_FIELDS, SplitAnswers, evaluate_dataset, statistics_ledger
from bench.ledger import Cost

T, F = True, False
NAN = float("nan")

TEST_GOLDS = [["Paris"], ["George Washington"], ["1969"], ["blue whale", "balaenoptera musculus"]]
TEST_NEVER = ["Paris", "Washington", "It was 1969.", "a shark"]
TEST_ALWAYS = ["London", "George Washington", "1969", "whale"]
TRAIN_GOLDS = [["Tokyo"], ["Mars"], ["Shakespeare"], ["oxygen"], ["7"], ["Nile"]]
TRAIN_NEVER = ["Tokyo", "Venus", "William Shakespeare", "hydrogen", "seven", "The Nile river"]
TRAIN_UNC = np.array([0.1, 0.8, 0.3, 0.6, 0.4, 0.2])
TEST_UNC = np.array([0.2, 0.9, 0.95, NAN])

UNC_T = 0.1 + 29 * 0.7 / 99      # 0.30505...
CONF_T = -0.8 + 57 * 0.7 / 99    # -0.39697...

NEVER_ROW = {"in_accuracy": 0.5, "em": 0.25, "f1": 13 / 24, "rc": 0.0, "lmc": 1.0}
ALWAYS_ROW = {"in_accuracy": 0.5, "em": 0.5, "f1": 2 / 3, "rc": 1.0, "lmc": 1.0}
IDEAL_ROW = {"in_accuracy": 0.75, "em": 0.5, "f1": 19 / 24, "rc": 0.5, "lmc": 1.5}
GATE_ROW = {"in_accuracy": 0.75, "em": 0.75, "f1": 11 / 12, "rc": 0.75, "lmc": 1.75}


def make_test(**over) -> SplitAnswers:
    kw = {"golds": TEST_GOLDS, "never": TEST_NEVER, "always": TEST_ALWAYS}
    kw.update(over)
    return SplitAnswers(**kw)


def make_train(**over) -> SplitAnswers:
    kw = {"golds": TRAIN_GOLDS, "never": TRAIN_NEVER,
          "scores": {"unc": TRAIN_UNC, "conf": -TRAIN_UNC}}
    kw.update(over)
    return SplitAnswers(**kw)


def scored_test(**over) -> SplitAnswers:
    return make_test(scores={"unc": TEST_UNC, "conf": -TEST_UNC}, **over)


def assert_row(row: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-12), key


# --------------------------------------------------------------------------- #
# Reference rows
# --------------------------------------------------------------------------- #
def test_reference_rows_without_scores_or_train():
    result = evaluate_dataset(make_test(), None)
    assert set(result["rows"]) == {"never", "always", "ideal"}
    assert result["gates"] == {}
    assert result["n_test"] == 4 and result["n_train"] == 0
    assert result["need_rate_test"] == 0.5
    rows = result["rows"]
    assert_row(rows["never"], NEVER_ROW)
    assert_row(rows["always"], ALWAYS_ROW)
    assert_row(rows["ideal"], IDEAL_ROW)
    for name in ("never", "always", "ideal"):
        assert rows[name]["kind"] == "reference"
        assert math.isnan(rows[name]["roc_auc"]) and math.isnan(rows[name]["spearman"])
        assert "generate_calls" not in rows[name]        # no costs given
    # Self-knowledge of the fixed decisions against need [F, T, F, T]:
    #   never  (skip all):     right on t0, t2 -> 0.5; over = t1, t3 -> 0.5; under 0
    #   always (retrieve all): right on t1, t3 -> 0.5; over 0; under = t0, t2 -> 0.5
    #   ideal  (= need):       1.0, 0, 0
    assert_row(rows["never"], {"accuracy": 0.5, "over_confidence": 0.5, "under_confidence": 0})
    assert_row(rows["always"], {"accuracy": 0.5, "over_confidence": 0, "under_confidence": 0.5})
    assert_row(rows["ideal"], {"accuracy": 1.0, "over_confidence": 0, "under_confidence": 0})


def test_train_without_scores_adds_no_gate():
    result = evaluate_dataset(make_test(), make_train(scores={}))
    assert set(result["rows"]) == {"never", "always", "ideal"}
    assert result["n_train"] == 6


# --------------------------------------------------------------------------- #
# Gate rows
# --------------------------------------------------------------------------- #
def test_gate_parameters_fit_on_train():
    result = evaluate_dataset(scored_test(), make_train(), dev_fraction=0.0)
    selections = result["gates"]
    assert set(selections) == {"unc", "conf"}
    # Without a dev part every kind's dev accuracy is its fit accuracy; the threshold
    # gate separates train perfectly (1.0), nothing beats that, and ties go to the
    # simplest kind, so the threshold gate is chosen for both estimators.
    for selection in selections.values():
        assert selection["chosen"] == "threshold"
        assert list(selection["candidates"]) == ["threshold", "logistic", "tree", "knn", "mlp"]
        assert selection["n_fit"] == 6 and selection["n_dev"] == 0
    gates = {name: s["candidates"]["threshold"] for name, s in selections.items()}
    assert gates["unc"]["direction"] == 1
    assert gates["unc"]["threshold"] == pytest.approx(UNC_T, abs=1e-12)
    assert gates["unc"]["threshold"] == float(np.linspace(0.1, 0.8, 100)[29])
    assert gates["unc"]["fit_accuracy"] == 1.0 and gates["unc"]["dev_accuracy"] == 1.0
    assert gates["conf"]["direction"] == -1
    assert gates["conf"]["threshold"] == pytest.approx(CONF_T, abs=1e-12)
    assert gates["conf"]["fit_accuracy"] == 1.0 and gates["conf"]["dev_accuracy"] == 1.0
    assert result["n_train"] == 6


def test_gate_row_replays_decisions():
    rows = evaluate_dataset(scored_test(), make_train(), dev_fraction=0.0)["rows"]
    # Both gates decide [F, T, T, T] (see the module docstring).
    for name in ("unc", "conf"):
        row = rows[name]
        assert row["kind"] == "gate"
        assert_row(row, GATE_ROW)
        assert_row(row, {"accuracy": 0.75, "over_confidence": 0.0, "under_confidence": 0.25})
        assert row["nan_scores"] == 1
    assert rows["unc"]["roc_auc"] == pytest.approx(0.75)
    assert rows["unc"]["spearman"] == pytest.approx(1 / math.sqrt(5))
    # Reference rows are unchanged by adding gates.
    assert_row(rows["never"], NEVER_ROW)
    assert_row(rows["always"], ALWAYS_ROW)
    assert_row(rows["ideal"], IDEAL_ROW)


def test_gate_row_without_nan():
    # "unc" test scores [0.1, 0.5, 0.2, 0.7] against t = 0.305: decision [F, T, F, T]
    # = need, so the gate row equals the Ideal row; accuracy 1, AUC 1 (positives 0.5,
    # 0.7 above negatives 0.1, 0.2), no NaN.
    test = make_test(scores={"unc": np.array([0.1, 0.5, 0.2, 0.7])})
    row = evaluate_dataset(test, make_train(), dev_fraction=0.0)["rows"]["unc"]
    assert_row(row, IDEAL_ROW)
    assert_row(row, {"accuracy": 1.0, "over_confidence": 0.0, "under_confidence": 0.0,
                     "roc_auc": 1.0})
    assert row["nan_scores"] == 0


def test_gate_uses_dev_split_seed():
    # With the default dev fraction the gate is ThresholdGate.fit on the same train
    # arrays with the same seed: evaluate_dataset passes them through unchanged.
    from bench.gates import ThresholdGate
    train_need = np.array([F, T, F, T, T, F])
    for seed in (0, 1, 2):
        result = evaluate_dataset(scored_test(), make_train(), dev_fraction=0.2, seed=seed)
        for name, scores in (("unc", TRAIN_UNC), ("conf", -TRAIN_UNC)):
            expected = ThresholdGate.fit(scores, train_need, 0.2, seed).to_dict()
            assert result["gates"][name]["candidates"]["threshold"] == expected


# --------------------------------------------------------------------------- #
# Cost columns
# --------------------------------------------------------------------------- #
def test_cost_columns():
    # never_cost   = (gen 1, prefill 1, prompt 10, generated 3) for every question
    # always_cost  = (1, 1, prompt 100*(i+1), 4, retrieval 1): prompts 100, 200, 300, 400
    # estimator_cost["unc"] = (10, 1, 10, 50) for every question; "conf" has none.
    never_cost = [Cost(generate_calls=1, prefills=1, prompt_tokens=10, generated_tokens=3)] * 4
    always_cost = [Cost(1, 1, 100 * (i + 1), 4, retrieval_calls=1) for i in range(4)]
    # plus 2 forward passes and 45 judge pairs per question for "unc".
    est_cost = {"unc": [Cost(10, 1, 10, 50, forward_passes=2, aux_calls=45)] * 4}
    test = scored_test(never_cost=never_cost, always_cost=always_cost, estimator_cost=est_cost)
    rows = evaluate_dataset(test, make_train(), dev_fraction=0.0)["rows"]

    def cost(row):
        return tuple(rows[row][f] for f in COST_FIELDS)

    assert COST_FIELDS == ("generate_calls", "prefills", "prompt_tokens", "generated_tokens",
                           "forward_passes", "aux_calls")
    # never: the closed-book pass only.
    assert cost("never") == (1, 1, 10, 3, 0, 0)
    # always: no closed-book pass; retrieval + augmented answer everywhere.
    #   prompt mean (100 + 200 + 300 + 400)/4 = 250
    assert cost("always") == (1, 1, 250, 4, 0, 0)
    # ideal: closed-book everywhere + always on t1, t3:
    #   gen 1 + 2/4 = 1.5, prefill 1.5, prompt 10 + (200 + 400)/4 = 160, generated 3 + 2*4/4 = 5
    assert cost("ideal") == (1.5, 1.5, 160, 5, 0, 0)
    # unc gate: closed-book + estimator everywhere + always on t1, t2, t3:
    #   gen 1 + 10 + 3/4 = 11.75, prefill 1 + 1 + 0.75 = 2.75,
    #   prompt 10 + 10 + (200 + 300 + 400)/4 = 245, generated 3 + 50 + 3*4/4 = 56
    assert cost("unc") == (11.75, 2.75, 245, 56, 2, 45)
    # conf gate: no estimator cost given: 1.75, 1.75, 10 + 225 = 235, 3 + 3 = 6
    assert cost("conf") == (1.75, 1.75, 235, 6, 0, 0)
    for row in rows.values():
        assert "seconds" not in row and "retrieval_calls" not in row


def test_cost_columns_uniform_brief_example():
    # All per-question costs equal: never (1,1,10,3), always (1,1,100,4), est (10,1,10,50).
    #   ideal (rc 0.5): (1 + .5, 1 + .5, 10 + 50, 3 + 2)      = (1.5, 1.5, 60, 5)
    #   unc  (rc .75): (1 + 10 + .75, 1 + 1 + .75, 10 + 10 + 75, 3 + 50 + 3) = (11.75, 2.75, 95, 56)
    test = make_test(scores={"unc": TEST_UNC},
                      never_cost=[Cost(1, 1, 10, 3)] * 4,
                      always_cost=[Cost(1, 1, 100, 4, retrieval_calls=1)] * 4,
                      estimator_cost={"unc": [Cost(10, 1, 10, 50)] * 4})
    train = make_train(scores={"unc": TRAIN_UNC})
    rows = evaluate_dataset(test, train, dev_fraction=0.0)["rows"]
    got = {name: tuple(rows[name][f] for f in COST_FIELDS[:4]) for name in rows}
    assert got == {"never": (1, 1, 10, 3), "always": (1, 1, 100, 4),
                   "ideal": (1.5, 1.5, 60, 5), "unc": (11.75, 2.75, 95, 56)}


def test_statistics_ledger_counts_each_statistic_once():
    # greedy: 1 call per question; samples: 10 calls, 1 prefill; unconditional: 1 forward.
    ledger = statistics_ledger({
        "greedy": [Cost(1, 1, 100, 5)] * 2,
        "samples": [Cost(10, 1, 100, 40), Cost(10, 1, 100, 60)],
        "unconditional": [Cost(forward_passes=1, prompt_tokens=5)] * 2})
    assert ledger["samples"]["generated_tokens"] == 50
    assert ledger["total"] == {"generate_calls": 11, "prefills": 2, "prompt_tokens": 205,
                               "generated_tokens": 55, "forward_passes": 1, "aux_calls": 0}


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_scores_without_train_raise():
    with pytest.raises(ValueError, match="train"):
        evaluate_dataset(scored_test(), None)


def test_test_scores_missing_from_train_raise():
    with pytest.raises(ValueError, match="'conf'"):
        evaluate_dataset(scored_test(), make_train(scores={"unc": TRAIN_UNC}))


def test_missing_always_answers_raise():
    with pytest.raises(ValueError, match="retrieval answers"):
        evaluate_dataset(make_test(always=None), None)


def test_train_scores_of_wrong_length_raise():
    with pytest.raises(ValueError):
        evaluate_dataset(scored_test(), make_train(scores={"unc": TRAIN_UNC[:5],
                                                            "conf": -TRAIN_UNC}))


def test_never_cost_without_always_cost_raises():
    with pytest.raises(ValueError, match="always_cost"):
        evaluate_dataset(make_test(never_cost=[Cost()] * 4), None)


def test_cost_list_of_wrong_length_raises():
    with pytest.raises(ValueError, match="3 entries for 4 questions"):
        evaluate_dataset(make_test(never_cost=[Cost()] * 4, always_cost=[Cost()] * 3), None)


# --------------------------------------------------------------------------- #
# Gate choice, PRR/AUPRC/ECE/Brier and reliability in the rows
# --------------------------------------------------------------------------- #
def test_rows_carry_gate_kind_prr_auprc_and_nan_calibration_for_threshold_gates():
    result = evaluate_dataset(scored_test(), make_train(), dev_fraction=0.0)
    rows = result["rows"]
    # "unc" test scores with NaN ranked on top: [0.2, 0.9, 0.95, 1.95], need [F, T, F, T],
    # quality q = [1, 0, 1, 0]. Least uncertain first: q [1, 0, 1, 0] -> prefix means
    # 1, 1/2, 2/3, 1/2 -> AR 2/3; random 1/2; oracle 19/24 -> PRR (1/6) / (7/24) = 4/7.
    # AUPRC: 1.95 (need) P 1 R 1/2; 0.95 (not) P 1/2; 0.9 (need) P 2/3 R 1 -> 1/2 + 1/3 = 5/6.
    # "conf" = -unc, NaN -> -0.2 + 1 = 0.8: [-0.2, -0.9, -0.95, 0.8] ranks the questions
    # q2, q1, q0, q3 from least uncertain: the same q sequence and PR steps -> 4/7, 5/6.
    for name in ("unc", "conf"):
        assert rows[name]["gate"] == "threshold"
        assert rows[name]["prr"] == pytest.approx(4 / 7)
        assert rows[name]["auprc"] == pytest.approx(5 / 6)
        # A threshold gate has no probability: no ECE/Brier, no reliability bins.
        assert math.isnan(rows[name]["ece"]) and math.isnan(rows[name]["brier"])
    assert result["reliability"] == {}
    for name in ("never", "always", "ideal"):
        assert "gate" not in rows[name]
        for key in ("prr", "auprc", "ece", "brier"):
            assert math.isnan(rows[name][key]), (name, key)


def test_classifier_gate_rows_have_calibration_and_reliability():
    from bench.gates import select_gate
    from bench.metrics import (
        brier_score,
        expected_calibration_error,
        need_retrieval_labels,
        reliability_bins,
        score_answers,
    )
    from tests.test_gate_selection import make_split

    train, test = make_split(11, 60, "train"), make_split(12, 20, "test")
    result = evaluate_dataset(test, train, dev_fraction=0.2, seed=0)
    # Recompute independently: the tree chosen for "holes" on train, its test P(need).
    train_need = need_retrieval_labels(score_answers(train.never, train.golds)["in_accuracy"])
    gate = select_gate(train.scores["holes"], train_need, 0.2, 0).chosen
    assert gate.kind == "tree" == result["rows"]["holes"]["gate"]
    need = need_retrieval_labels(score_answers(test.never, test.golds)["in_accuracy"])
    probability = gate.probability(test.scores["holes"])
    row = result["rows"]["holes"]
    assert row["ece"] == pytest.approx(expected_calibration_error(need, probability))
    assert row["brier"] == pytest.approx(brier_score(need, probability))
    bins = reliability_bins(need, probability)
    assert result["reliability"]["holes"] == {k: [round(v, 4) for v in vals]
                                              for k, vals in bins.items()}
    assert sum(result["reliability"]["holes"]["count"]) == 20
    # The threshold-gated estimators have none.
    assert "mono" not in result["reliability"] and math.isnan(result["rows"]["mono"]["ece"])
    # Every scored estimator has a curve from rc 0 to 1 in n + 1 = 21 steps.
    assert set(result["curves"]) == {"mono", "ushape", "reversed", "holes"}
    assert result["curves"]["holes"]["rc"][:2] == [0.0, 0.05]
    assert len(result["curves"]["holes"]["rc"]) == 21
