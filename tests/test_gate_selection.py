"""Gate selection on the dev part of train, and the acceptance test: test labels never
reach a gate.

Selection fits every registered kind on the fit part, keeps the best dev accuracy and
breaks ties by simplicity (threshold < logistic < tree < knn < mlp).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import bench.evaluation as evaluation
from bench.evaluation import SplitAnswers, evaluate_dataset
from bench.gates import (
    GateSelection,
    ThresholdGate,
    choose,
    gate_kinds,
    register_gate,
    select_gate,
    split_dev,
)

T, F = True, False
ORDER = ["threshold", "logistic", "tree", "knn", "mlp"]


# --------------------------------------------------------------------------- #
# Registry and the choice rule
# --------------------------------------------------------------------------- #
def test_registry_holds_the_five_kinds_simplest_first():
    kinds = gate_kinds()
    assert list(kinds) == ORDER
    assert [cls.simplicity for cls in kinds.values()] == [0, 1, 2, 3, 4]


def test_register_gate_refuses_a_second_kind_of_the_same_name_or_rank():
    class Again:
        kind, simplicity = "tree", 99

    class SameRank:
        kind, simplicity = "new_kind", 2

    with pytest.raises(ValueError, match="registered twice"):
        register_gate(Again)
    with pytest.raises(ValueError, match="simplicity rank 2"):
        register_gate(SameRank)
    assert list(gate_kinds()) == ORDER


@dataclass
class Stub:
    kind: str
    dev_accuracy: float
    fit_accuracy: float = 1.0


def test_choose_takes_the_best_dev_accuracy_not_the_best_fit_accuracy():
    candidates = {"threshold": Stub("threshold", 0.70, fit_accuracy=0.99),
                  "logistic": Stub("logistic", 0.75, fit_accuracy=0.60),
                  "tree": Stub("tree", 0.72)}
    assert choose(candidates).kind == "logistic"


def test_choose_breaks_ties_by_candidate_order():
    # knn and mlp tie at 0.8 above the rest: knn comes first (simpler).
    candidates = {k: Stub(k, acc) for k, acc in zip(ORDER, [0.6, 0.7, 0.7, 0.8, 0.8])}
    assert choose(candidates).kind == "knn"
    # All equal: the threshold gate.
    assert choose({k: Stub(k, 0.5) for k in ORDER}).kind == "threshold"


def test_choose_needs_candidates():
    with pytest.raises(ValueError, match="no candidate"):
        choose({})


# --------------------------------------------------------------------------- #
# select_gate on a hand-made train set
# --------------------------------------------------------------------------- #
def u_shape_train():
    """20 train rows: split_dev(20, 0.2, 0) holds out rows 2, 4, 6, 19 for dev.

    Fit part: scores 0..15, need T for 0, 1, 2 and 13, 14, 15, F for 3..12.
    Dev part: (0.5, T), (6.5, F), (8.5, F), (14.5, T).
    """
    fit_idx, dev_idx = split_dev(20, 0.2, seed=0)
    assert dev_idx.tolist() == [2, 4, 6, 19]
    scores, need = np.empty(20), np.empty(20, dtype=bool)
    scores[fit_idx] = np.arange(16.0)
    need[fit_idx] = [T] * 3 + [F] * 10 + [T] * 3
    scores[dev_idx] = [0.5, 6.5, 8.5, 14.5]
    need[dev_idx] = [T, F, F, T]
    return scores, need


def test_tree_is_chosen_on_dev_for_a_u_shape():
    # Threshold, fit part: +1 (retrieve iff s >= t) is best for t in (12, 13]: right on
    #   13..15 and 3..12, wrong on 0..2 -> 13/16. Grid linspace(0, 15, 100), k -> 15k/99;
    #   first point above 12: k = 80, t = 1200/99. -1 is best for t in [2, 3), also 13/16.
    #   Dev: +1 gets 6.5, 8.5, 14.5 right and 0.5 wrong -> 3/4; -1 gets 0.5, 6.5, 8.5
    #   right and 14.5 wrong -> 3/4; the tie keeps +1.
    # Tree: splits 2.5 and 12.5 separate the fit part (1.0) and all four dev rows (1.0).
    # Every monotone rule (threshold, logistic) gets at most 3 of the 4 dev rows, so the
    # tree wins; the MLP may tie it at 1.0, but the tree is simpler.
    scores, need = u_shape_train()
    selection = select_gate(scores, need, dev_fraction=0.2, seed=0)
    assert isinstance(selection, GateSelection)
    assert selection.chosen.kind == "tree"
    assert (selection.n_fit, selection.n_dev) == (16, 4)
    result = selection.to_dict()
    assert result["chosen"] == "tree" and list(result["candidates"]) == ORDER
    assert result["candidates"]["threshold"] == {"threshold": 1200 / 99, "direction": 1,
                                                 "fit_accuracy": 13 / 16, "dev_accuracy": 0.75}
    assert result["candidates"]["tree"]["splits"] == [2.5, 12.5]
    assert result["candidates"]["tree"]["dev_accuracy"] == 1.0
    assert result["candidates"]["logistic"]["dev_accuracy"] <= 0.75
    # The chosen gate is the one fitted on the fit part, not a refit on fit + dev.
    assert selection.chosen is selection.candidates["tree"]


def test_kinds_restrict_candidates_but_ties_keep_registry_order():
    scores, need = u_shape_train()
    # Given in the reverse order: the tie between tree and mlp (both 1.0 on dev) still
    # goes to the tree, the simpler kind.
    selection = select_gate(scores, need, 0.2, 0, kinds=["mlp", "tree"])
    assert list(selection.candidates) == ["tree", "mlp"]
    assert selection.candidates["mlp"].dev_accuracy == 1.0
    assert selection.chosen.kind == "tree"
    # Without the tree, only the MLP of {threshold, logistic, mlp} bends around the
    # U: it beats the threshold's 3/4 on dev.
    selection = select_gate(scores, need, 0.2, 0, kinds=["threshold", "logistic", "mlp"])
    assert selection.chosen.kind == "mlp"
    with pytest.raises(ValueError, match="unknown gate kind"):
        select_gate(scores, need, 0.2, 0, kinds=["forest"])


def test_reversed_score_selects_threshold_direction_minus_one():
    # Need T exactly for scores <= 3 of 0..9 (reversed convention), no dev part.
    # Threshold -1 separates (1.0); so does logistic, but the threshold is simpler.
    scores = np.arange(10.0)
    selection = select_gate(scores, scores <= 3, dev_fraction=0.0)
    assert selection.chosen.kind == "threshold"
    assert selection.chosen.direction == -1
    # Grid linspace(0, 9, 100), k -> k/11; -1 retrieves s <= t, perfect for t in [3, 4):
    # the first grid point >= 3 is k = 33 (33/11 = 3, or a hair below in floats -> 34).
    k33 = float(np.linspace(0, 9, 100)[33])
    assert selection.chosen.threshold == (k33 if k33 >= 3 else float(np.linspace(0, 9, 100)[34]))
    assert selection.candidates["logistic"].dev_accuracy == 1.0


def test_select_gate_equals_threshold_fit_for_the_threshold_candidate():
    rng = np.random.default_rng(4)
    scores, need = rng.normal(size=50), rng.random(50) < 0.4
    for seed in (0, 1):
        selection = select_gate(scores, need, 0.2, seed)
        assert selection.candidates["threshold"] == ThresholdGate.fit(scores, need, 0.2, seed)


def test_select_gate_is_deterministic_and_validates():
    rng = np.random.default_rng(5)
    scores, need = rng.normal(size=40), rng.random(40) < 0.5
    assert select_gate(scores, need, seed=2).to_dict() == select_gate(scores, need,
                                                                        seed=2).to_dict()
    with pytest.raises(ValueError, match="equal length"):
        select_gate(np.zeros(3), np.zeros(4, bool))
    with pytest.raises(ValueError, match="no rows left"):
        select_gate(np.array([0.1, 0.2]), np.array([T, F]), dev_fraction=0.8)


# --------------------------------------------------------------------------- #
# Acceptance: poisoned test labels leave every gate unchanged
# --------------------------------------------------------------------------- #
def make_split(seed: int, n: int, prefix: str) -> SplitAnswers:
    """Fixed answers and scores. The Never answer is right iff |z| < 0.9, so need is
    U-shaped in z: ``ushape`` (z plus small noise) needs a non-monotone gate, ``mono`` is
    need plus noise, ``reversed`` = -mono, ``holes`` = mono with ~15% NaN."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    right = np.abs(z) < 0.9
    golds = [[f"{prefix} gold {i}"] for i in range(n)]
    never = [f"{prefix} gold {i}" if r else f"{prefix} guess {i}" for i, r in enumerate(right)]
    always = [f"{prefix} gold {i}" if rng.random() < 0.6 else "no" for i in range(n)]
    mono = ~right + rng.normal(0, 0.7, n)
    holes = mono.copy()
    holes[rng.random(n) < 0.15] = np.nan
    return SplitAnswers(golds=golds, never=never, always=always,
                        scores={"mono": mono, "ushape": z + rng.normal(0, 0.1, n),
                                "reversed": -mono, "holes": holes})


def flip_labels(split: SplitAnswers) -> SplitAnswers:
    """Replace every gold so that each need label flips: where the Never answer was
    right the gold becomes unreachable, where it was wrong the gold becomes that answer."""
    golds = [["zzz poisoned"] if never.endswith(f"gold {i}") else [never]
             for i, never in enumerate(split.never)]
    return SplitAnswers(golds=golds, never=split.never, always=split.always,
                        scores=split.scores)


def test_acceptance_poisoned_test_labels_do_not_change_any_gate():
    train, test = make_split(11, 60, "train"), make_split(12, 20, "test")
    clean = evaluate_dataset(test, train, dev_fraction=0.2, seed=0)
    poisoned = evaluate_dataset(flip_labels(test), train, dev_fraction=0.2, seed=0)

    # The poisoning took effect: every need label flipped (need rate r -> 1 - r), so the
    # Never row's In-Accuracy is 1 - r' and every gate's accuracy and ROC-AUC flip too.
    assert clean["need_rate_test"] == 0.45 and poisoned["need_rate_test"] == 0.55
    assert clean["rows"]["never"]["in_accuracy"] == pytest.approx(0.55)
    assert poisoned["rows"]["never"]["in_accuracy"] == pytest.approx(0.45)
    for name in ("mono", "ushape", "reversed", "holes"):
        c, p = clean["rows"][name], poisoned["rows"][name]
        assert p["accuracy"] == pytest.approx(1 - c["accuracy"])
        assert p["roc_auc"] == pytest.approx(1 - c["roc_auc"])
        assert p["prr"] != pytest.approx(c["prr"]) and p["auprc"] != pytest.approx(c["auprc"])
        # Same gate, same test scores: the same decisions.
        assert p["rc"] == c["rc"] and p["gate"] == c["gate"]

    # Chosen kinds, thresholds, directions, every candidate's parameters and its fit and
    # dev accuracies: identical.
    assert poisoned["gates"] == clean["gates"]
    # The pin makes the comparison cover classifier parameters, not only thresholds.
    assert {k: v["chosen"] for k, v in clean["gates"].items()} == {
        "mono": "threshold", "ushape": "mlp", "reversed": "threshold", "holes": "tree"}
    assert clean["gates"]["reversed"]["candidates"]["threshold"]["direction"] == -1
    # Calibration of the classifier gates reads the labels, so it changes.
    assert set(clean["reliability"]) == set(poisoned["reliability"]) == {"ushape", "holes"}
    assert poisoned["reliability"] != clean["reliability"]
    assert poisoned["rows"]["holes"]["brier"] != pytest.approx(clean["rows"]["holes"]["brier"])


def test_gates_are_fit_before_any_test_answer_is_graded(monkeypatch):
    """Structural check: ``fit_gates`` gets train labels only, and the test golds are
    first graded after every gate is fitted."""
    train, test = make_split(11, 60, "train"), make_split(12, 20, "test")
    events: list[tuple[str, int]] = []
    real_score, real_fit = evaluation.score_answers, evaluation.fit_gates

    def score_answers(predictions, golds):
        events.append(("grade test" if golds[0][0].startswith("test") else "grade train",
                       len(golds)))
        return real_score(predictions, golds)

    def fit_gates(train_scores, need, dev_fraction, seed):
        assert len(need) == 60 and all(len(s) == 60 for s in train_scores.values())
        events.append(("fit", len(train_scores)))
        return real_fit(train_scores, need, dev_fraction, seed)

    monkeypatch.setattr(evaluation, "score_answers", score_answers)
    monkeypatch.setattr(evaluation, "fit_gates", fit_gates)
    evaluate_dataset(test, train)
    assert events == [("grade train", 60), ("fit", 4), ("grade test", 20), ("grade test", 20)]
