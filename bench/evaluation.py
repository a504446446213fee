"""From answers, scores and costs of one dataset to its result rows.

Shared by ``arbench run`` (answers from the model) and ``arbench score``
(answers produced elsewhere). Gates are fit and selected on train only
(:mod:`bench.gates`), before any test answer is graded: test labels are read
only to score decisions already made.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.gates import GateSelection, fit_gates
from bench.ledger import Cost, mean_cost
from bench.metrics import (
    gate_row,
    need_retrieval_labels,
    operating_curve,
    reference_rows,
    reliability_bins,
    score_answers,
    self_knowledge,
)

#: Per-question cost fields reported in metrics (seconds are not deterministic).
COST_FIELDS = ("generate_calls", "prefills", "prompt_tokens", "generated_tokens",
               "forward_passes", "aux_calls")

#: ECE and Brier of rows without a predicted probability (references, threshold gates).
NO_CALIBRATION = {"ece": float("nan"), "brier": float("nan")}


@dataclass
class SplitAnswers:
    """Everything known about one split's questions, aligned by index."""

    golds: Sequence[Sequence[str]]
    never: Sequence[str]
    always: Sequence[str] | None = None
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: Cost of the closed-book answer, of each estimator's extra statistics,
    #: and of retrieval + the augmented answer, per question.
    never_cost: Sequence[Cost] | None = None
    estimator_cost: Mapping[str, Sequence[Cost]] = field(default_factory=dict)
    always_cost: Sequence[Cost] | None = None


def evaluate_dataset(test: SplitAnswers, train: SplitAnswers | None, dev_fraction: float = 0.2,
                     seed: int = 0) -> dict:
    """Rows ``never``, ``always``, ``ideal`` and one per scored estimator.

    Every estimator's gate is selected on train (:func:`bench.gates.select_gate`)
    before the test answers are graded, so nothing about the test labels can
    reach a gate.

    Returns
    -------
    dict
        ``rows``: ``{name: metrics}``; ``gates``: ``{estimator: {"chosen", "candidates",
        "n_fit", "n_dev"}}``; ``curves``: ``{estimator: {"rc", "in_accuracy"}}``, the
        test operating curve; ``reliability``: ``{estimator: {"confidence", "frequency",
        "count"}}`` for estimators whose chosen gate outputs probabilities; ``n_test``,
        ``n_train``, ``need_rate_test``.
    """
    if test.always is None:
        raise ValueError("test answers need both no-retrieval and retrieval answers")
    _check_costs(test)
    selections = _select_gates(list(test.scores), train, dev_fraction, seed)

    # Test labels are read from here on, after every gate is fitted.
    never = score_answers(list(test.never), [list(g) for g in test.golds])
    always = score_answers(list(test.always), [list(g) for g in test.golds])
    need = need_retrieval_labels(never["in_accuracy"])
    # Rows hold numbers and the text columns "kind" and "gate".
    rows: dict[str, dict[str, Any]] = dict(reference_rows(never, always))
    decisions = {"never": np.zeros(len(need), bool), "always": np.ones(len(need), bool),
                 "ideal": need.copy()}
    for name in ("never", "always", "ideal"):
        rows[name].update(NO_CALIBRATION)
        rows[name].update(self_knowledge(need, decisions[name]))
        rows[name]["kind"] = "reference"

    curves: dict[str, dict] = {}
    reliability: dict[str, dict] = {}
    for name, selection in selections.items():
        test_scores = np.asarray(test.scores[name], dtype=np.float64)
        gate = selection.chosen
        decision = gate.decide(test_scores)
        probability = gate.probability(test_scores)
        decisions[name] = decision
        row: dict[str, Any] = {**gate_row(never, always, decision), **NO_CALIBRATION}
        row.update(self_knowledge(need, decision, _finite_for_ranking(test_scores),
                                  probability))
        row["kind"] = "gate"
        row["gate"] = gate.kind
        row["nan_scores"] = int(np.isnan(test_scores).sum())
        rows[name] = row
        curves[name] = operating_curve(never["in_accuracy"], always["in_accuracy"], test_scores)
        if probability is not None:
            bins = reliability_bins(need, probability)
            reliability[name] = {key: [round(v, 4) for v in values]
                                 for key, values in bins.items()}

    if test.never_cost is not None:
        for name, decision in decisions.items():
            rows[name].update(_cost_columns(test, name, decision))
    return {"rows": rows, "gates": {name: s.to_dict() for name, s in selections.items()},
            "curves": curves, "reliability": reliability, "n_test": len(need),
            "n_train": 0 if train is None else len(train.never),
            "need_rate_test": float(need.mean())}


def _select_gates(names: list[str], train: SplitAnswers | None, dev_fraction: float,
                  seed: int) -> dict[str, GateSelection]:
    """One gate per estimator name, from train answers and scores alone."""
    if not names:
        return {}
    if train is None:
        raise ValueError("estimator scores need train answers and scores to fit gates")
    for name in names:
        if name not in train.scores:
            raise ValueError(f"estimator {name!r} has test scores but no train scores")
    train_never = score_answers(list(train.never), [list(g) for g in train.golds])
    train_need = need_retrieval_labels(train_never["in_accuracy"])
    return fit_gates({name: train.scores[name] for name in names}, train_need,
                     dev_fraction, seed)


def _check_costs(test: SplitAnswers) -> None:
    """Cost lists, when given, must be complete: one entry per test question."""
    if test.never_cost is None:
        return
    if test.always_cost is None:
        raise ValueError("test never_cost is given but always_cost is not: "
                         "row costs need both")
    n = len(test.never)
    named = [("never_cost", test.never_cost), ("always_cost", test.always_cost)]
    named += [(f"estimator_cost[{k!r}]", v) for k, v in test.estimator_cost.items()]
    for what, costs in named:
        if len(costs) != n:
            raise ValueError(f"test {what} has {len(costs)} entries for {n} questions")


def _finite_for_ranking(scores: np.ndarray) -> np.ndarray:
    """NaN → above every finite score: an undefined score counts as most uncertain."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isnan(scores).any():
        return scores
    finite = scores[np.isfinite(scores)]
    top = (finite.max() + 1.0) if finite.size else 1.0
    return np.where(np.isnan(scores), top, scores)


def statistics_ledger(stat_costs: Mapping[str, Sequence[Cost]]) -> dict[str, dict[str, float]]:
    """Mean cost per question of each statistic computed once for the split, and their sum.

    Every estimator reading a statistic shares this one computation, so the
    ``total`` is the same however many estimators were selected.
    """
    ledger = {name: mean_cost(list(costs)) for name, costs in stat_costs.items()}
    total = Cost()
    for cost in ledger.values():
        total = total + cost
    return {name: {f: round(getattr(c, f), 6) for f in COST_FIELDS}
            for name, c in {**ledger, "total": total}.items()}


def _cost_columns(test: SplitAnswers, name: str, decision: np.ndarray) -> dict[str, float]:
    """True mean cost per question of a row: closed-book pass (unless the row always
    retrieves without it), the estimator's statistics, and retrieval where decided."""
    assert test.never_cost is not None and test.always_cost is not None
    per_question = []
    for i, retrieve in enumerate(decision):
        cost = Cost() if name == "always" else test.never_cost[i]
        if name in test.estimator_cost:
            cost = cost + test.estimator_cost[name][i]
        if retrieve:
            cost = cost + test.always_cost[i]
        per_question.append(cost)
    mean = mean_cost(per_question)
    return {f: round(getattr(mean, f), 6) for f in COST_FIELDS}
