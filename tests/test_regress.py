"""The regression check (``python -m bench.regress``, ``tox -e regress``).

(a) The comparison on hand-made results: within tolerance passes, beyond it,
missing or extra values fail. (b) The acceptance demonstration, offline: the
committed answers of the pinned run, replayed through today's metric code,
reproduce ``results/regress/expected.json`` exactly; with a metric
implementation perturbed (monkeypatched), the same check fails.
"""
from __future__ import annotations

import json
import math
import shutil
import string
from pathlib import Path

import numpy as np
import pytest

import bench.metrics.qa as qa
import bench.runner
from bench.evaluation import SplitAnswers
from bench.ledger import Cost
from bench.regress import (
    MISSING,
    Difference,
    check,
    compare,
    flatten,
    format_differences,
    main,
    replay_runs,
)
from bench.regress_replay import decode, encode, recording_evaluations, replay

REGRESS_DIR = Path(__file__).resolve().parents[1] / "results" / "regress"


def _results(in_accuracy=0.5, threshold=2.0, kind="reference", rc=(0.0, 0.5, 1.0)) -> dict:
    return {"d": {"rows": {"never": {"in_accuracy": in_accuracy, "roc_auc": None, "kind": kind},
                           "always": {"in_accuracy": 0.75, "kind": "reference"}},
                  "gates": {"perplexity": {"threshold": threshold, "chosen": "threshold"}},
                  "curves": {"perplexity": {"rc": list(rc)}},
                  "n_test": 4}}


# -- (a) the comparison ----------------------------------------------------

def test_identical_results_have_no_difference():
    assert compare(_results(), _results()) == []


def test_qa_metric_within_absolute_tolerance_passes_and_beyond_fails():
    # Default tolerance: 1e-6 absolute. 0.5 + 5e-7 is inside, 0.5 + 2e-6 outside,
    # and one changed answer of 4 (0.5 -> 0.75) far outside.
    assert compare(_results(), _results(in_accuracy=0.5 + 5e-7)) == []
    assert compare(_results(), _results(in_accuracy=0.5 + 2e-6)) == [
        Difference("d", "never", "in_accuracy", 0.5, 0.5 + 2e-6)]
    assert compare(_results(), _results(in_accuracy=0.75)) == [
        Difference("d", "never", "in_accuracy", 0.5, 0.75)]


def test_gate_parameters_also_allow_relative_noise():
    # gates: 1e-6 + 1e-5 * |2.0| = 2.1e-5 allowed; 2.00002 is inside, 2.0001 outside.
    assert compare(_results(), _results(threshold=2.00002)) == []
    assert compare(_results(), _results(threshold=2.0001)) == [
        Difference("d", "gates:perplexity", "threshold", 2.0, 2.0001)]


def test_missing_extra_and_non_numeric_values_are_differences():
    got = _results(kind="gate", rc=(0.0, 0.5))
    del got["d"]["rows"]["always"]
    got["d"]["rows"]["never"]["prr"] = 0.25
    assert compare(_results(), got) == [
        Difference("d", "curves:perplexity", "rc[2]", 1.0, MISSING),
        Difference("d", "always", "in_accuracy", 0.75, MISSING),
        Difference("d", "always", "kind", "reference", MISSING),
        Difference("d", "never", "kind", "reference", "gate"),
        Difference("d", "never", "prr", MISSING, 0.25),
    ]


def test_a_whole_dataset_missing_lists_every_value():
    # _results() has 9 leaves: 5 row values, 2 gate values, 1 curve list of 3 → 11 in all.
    leaves = list(flatten(_results()["d"]))
    assert len(leaves) == 11
    assert len(compare(_results(), {})) == 11


def test_booleans_are_not_numbers_and_none_matches_none():
    assert compare({"d": {"x": True}}, {"d": {"x": 1}}) == [Difference("d", "-", "x", True, 1)]
    assert compare({"d": {"x": None}}, {"d": {"x": None}}) == []
    assert compare({"d": {"x": None}}, {"d": {"x": 0.0}}) == [
        Difference("d", "-", "x", None, 0.0)]


def test_format_lists_dataset_method_metric_expected_got():
    text = format_differences([Difference("demo/demo", "perplexity", "f1", 0.25, 0.3)])
    header, line = text.splitlines()
    assert header.split() == ["dataset", "method", "metric", "expected", "got"]
    assert line.split() == ["demo/demo", "perplexity", "f1", "0.25", "0.3"]


# -- recording and replaying evaluate_dataset's inputs ---------------------------

def _tiny_splits() -> tuple[SplitAnswers, SplitAnswers]:
    golds = [["Paris"], ["Blue"], ["1969"], ["Everest"]]
    test = SplitAnswers(golds=golds, never=["Paris, France", "red", "in 1969", "K2"],
                        always=["Paris", "blue", "1968", "Mount Everest"],
                        scores={"u": np.array([0.1, 0.9, 0.2, 0.8])})
    train = SplitAnswers(golds=golds, never=["Paris", "green", "1969", "Lhotse"],
                         scores={"u": np.array([0.2, 0.7, 0.1, float("nan")])})
    return test, train


def test_codec_round_trips_splits_costs_and_non_finite_scores():
    split = SplitAnswers(golds=[("a", "b")], never=["x"], always=["y"],
                         scores={"u": np.array([float("nan"), float("inf"), -1.5])},
                         never_cost=[Cost(generate_calls=1, prompt_tokens=7, seconds=0.3)])
    back = decode(json.loads(json.dumps(encode(split))))
    assert back.golds == [["a", "b"]] and back.never == ["x"] and back.always == ["y"]
    assert back.scores["u"].dtype == np.float64
    assert math.isnan(back.scores["u"][0]) and back.scores["u"][1] == math.inf
    assert back.scores["u"][2] == -1.5
    # Wall time is not deterministic and is not recorded.
    assert back.never_cost == [Cost(generate_calls=1, prompt_tokens=7)]


def test_recording_sees_the_runners_calls_and_restores_the_function():
    original = bench.runner.evaluate_dataset
    test, train = _tiny_splits()
    with recording_evaluations() as calls:
        bench.runner.evaluate_dataset(test, train, 0.5, seed=3)
    assert bench.runner.evaluate_dataset is original
    assert len(calls) == 1
    assert calls[0]["test"] is test and calls[0]["train"] is train
    assert (calls[0]["dev_fraction"], calls[0]["seed"]) == (0.5, 3)


def test_replay_recomputes_the_rows_by_hand():
    test, train = _tiny_splits()
    recorded = {"tiny": encode({"test": test, "train": train, "dev_fraction": 0.5, "seed": 0})}
    rows = replay(json.loads(json.dumps(recorded)), {})["tiny"]["rows"]
    # Never: "Paris, France" ✓, "red" ✗, "in 1969" ✓, "K2" ✗ → 2/4.
    # Always: "Paris" ✓, "blue" ✓ (lower-cased), "1968" ✗, "Mount Everest" ✓ → 3/4.
    # Ideal retrieves exactly for questions 2 and 4 (closed-book wrong): ✓ ✓ ✓ ✓ → 1.0,
    # with RC = 2/4.
    assert rows["never"]["in_accuracy"] == 0.5
    assert rows["always"]["in_accuracy"] == 0.75
    assert (rows["ideal"]["in_accuracy"], rows["ideal"]["rc"]) == (1.0, 0.5)
    assert rows["u"]["kind"] == "gate"


# -- (b) acceptance: the committed expectation, without the model -------------

@pytest.fixture(scope="module")
def committed() -> tuple[dict, dict]:
    expected = json.loads((REGRESS_DIR / "expected.json").read_text())
    answers = json.loads((REGRESS_DIR / "answers.json").read_text())["runs"]
    return expected, answers


def test_expectation_covers_the_pinned_configuration(committed):
    expected, answers = committed
    assert sorted(expected["runs"]) == sorted(answers) == ["demo", "shared"]
    assert list(expected["runs"]["demo"]["datasets"]) == ["demo"]
    assert sorted(expected["runs"]["shared"]["datasets"]) == ["hotpotqa", "nq"]
    shared_nq = expected["runs"]["shared"]["datasets"]["nq"]
    assert (shared_nq["n_test"], shared_nq["n_train"]) == (10, 10)
    rows = expected["runs"]["demo"]["datasets"]["demo"]["rows"]
    assert {"never", "always", "ideal", "perplexity", "mean_token_entropy", "max_token_entropy",
            "lexical_similarity", "p_true"} <= set(rows)


def test_unperturbed_metrics_reproduce_the_expectation(committed):
    expected, answers = committed
    differences, notes = check(expected, replay_runs(expected, answers))
    assert differences == [] and notes == []


def _normalize_keeping_articles(text: str) -> str:
    # bench.metrics.qa.normalize without the a/an/the deletion.
    table = str.maketrans({ch: " " for ch in string.punctuation})
    return " ".join(text.lower().translate(table).split())


def _prefix_only(haystack: list[str], needle: list[str]) -> bool:
    # In-Accuracy's token-run search, broken to look only at the start of the answer.
    return bool(needle) and haystack[:len(needle)] == needle


def _precision_off_by_one(original):
    # Token F1 with one token too many on the prediction side (wrong precision).
    return lambda pred_tokens, gold_tokens: original(pred_tokens + ["<extra>"], gold_tokens)


#: (function of bench.metrics.qa, original → perturbed version, metric it must move).
PERTURBATIONS = {
    "normalize keeps articles": ("normalize", lambda _: _normalize_keeping_articles, "em"),
    "in-accuracy matches prefixes only": ("_contains_contiguous", lambda _: _prefix_only,
                                          "in_accuracy"),
    "f1 precision off by one": ("_token_f1", _precision_off_by_one, "f1"),
}


@pytest.mark.parametrize("perturbation", sorted(PERTURBATIONS))
def test_a_perturbed_metric_fails_the_check(committed, monkeypatch, perturbation):
    attribute, make, metric = PERTURBATIONS[perturbation]
    expected, answers = committed
    monkeypatch.setattr(qa, attribute, make(getattr(qa, attribute)))
    differences, _ = check(expected, replay_runs(expected, answers))
    assert differences, f"perturbing {attribute} went unnoticed"
    assert metric in {d.metric for d in differences}
    # The reference rows are scored straight from the answers: they move too.
    assert {"never", "always"} & {d.method for d in differences if d.metric == metric}


def test_offline_cli_passes_on_the_committed_files_and_fails_on_a_tampered_copy(
        committed, tmp_path, capsys):
    assert main(["--offline", "--expected-dir", str(REGRESS_DIR)]) == 0
    assert "regress: OK" in capsys.readouterr().out

    shutil.copy(REGRESS_DIR / "answers.json", tmp_path / "answers.json")
    expected, _ = committed
    tampered = json.loads(json.dumps(expected))
    never = tampered["runs"]["demo"]["datasets"]["demo"]["rows"]["never"]
    never["f1"] = never["f1"] + 0.01
    (tmp_path / "expected.json").write_text(json.dumps(tampered))
    assert main(["--offline", "--expected-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "demo/demo" in out and "never" in out and "regress: FAILED: 1 of" in out
