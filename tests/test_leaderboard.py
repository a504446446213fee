"""Reciprocal-rank fusion and the leaderboard writers, against hand-computed values."""
from __future__ import annotations

import csv
import io
import json

import pytest

from bench.leaderboard import (
    build_leaderboard,
    competition_ranks,
    rrf_scores,
    to_csv,
    to_json,
    to_markdown,
    write_leaderboard,
)
from tests.report_fixtures import synthetic_metrics


def _metrics(table: dict[str, dict[str, float | None]], metric: str = "in_accuracy") -> dict:
    """{dataset: {method: value}} -> a minimal metrics.json with gate rows."""
    return {"datasets": {d: {"rows": {m: {"kind": "gate", metric: v} for m, v in rows.items()}}
                         for d, rows in table.items()}}


def test_competition_ranks_share_the_minimum_rank():
    # 0.9 first; the two 0.8 tie at rank 2; 0.1 is fourth (not third).
    assert competition_ranks({"a": 0.8, "b": 0.9, "c": 0.1, "d": 0.8}, True) == {
        "b": 1, "a": 2, "d": 2, "c": 4}
    # Lower is better: 0.1 first.
    assert competition_ranks({"a": 0.8, "b": 0.9, "c": 0.1, "d": 0.8}, False) == {
        "c": 1, "a": 2, "d": 2, "b": 4}
    # Undefined values are not ranked; float noise of the last bit ties.
    assert competition_ranks({"a": None, "b": 0.3, "c": 0.1 + 0.2}, True) == {"b": 1, "c": 1}


def test_rrf_three_methods_two_datasets_with_a_tie():
    # d1: x 0.9, y 0.8, z 0.8  -> ranks x 1, y 2, z 2 (tie)
    # d2: x 0.1, y 0.5, z 0.3  -> ranks y 1, z 2, x 3
    # k = 60: x = 1/61 + 1/63 = 0.0322664
    #         y = 1/62 + 1/61 = 0.0325225
    #         z = 1/62 + 1/62 = 0.0322581   -> order y, x, z
    metrics = _metrics({"d1": {"x": 0.9, "y": 0.8, "z": 0.8},
                        "d2": {"x": 0.1, "y": 0.5, "z": 0.3}})
    board = build_leaderboard(metrics, ["in_accuracy"])
    scores = {row.method: row.rrf["in_accuracy"] for row in board.rows}
    assert scores["x"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["z"] == pytest.approx(2 / 62)
    assert [(row.method, row.rank) for row in board.rows] == [("y", 1), ("x", 2), ("z", 3)]
    # k is a parameter: k = 1 gives x = 1/2 + 1/4, y = 1/3 + 1/2, z = 1/3 + 1/3.
    board_k1 = build_leaderboard(metrics, ["in_accuracy"], k=1)
    assert {r.method: r.rrf["in_accuracy"] for r in board_k1.rows} == pytest.approx(
        {"x": 0.75, "y": 5 / 6, "z": 2 / 3})
    assert board_k1.k == 1


def test_rrf_scores_sum_over_datasets():
    assert rrf_scores([{"a": 1, "b": 2}, {"a": 2}], k=0) == pytest.approx({"a": 1.5, "b": 0.5})


def test_fixture_leaderboard_ranks_every_metric():
    board = build_leaderboard(synthetic_metrics())
    rows = {row.method: row for row in board.rows}
    # In-Accuracy. nq: a .50, c .50 -> 1, 1; flare .45 -> 3; b .40 -> 4.
    #              hotpotqa: b .35 -> 1; flare .32 -> 2; a .30 -> 3; c .25 -> 4.
    expected_acc = {"gate_a": 1 / 61 + 1 / 63, "gate_b": 1 / 64 + 1 / 61,
                    "gate_c": 1 / 61 + 1 / 64, "flare": 1 / 63 + 1 / 62}
    # ROC-AUC. nq: a 1, b 2, c 3, flare 4. hotpotqa: a .75, b .75 -> 1, 1; c 3; flare null.
    expected_auc = {"gate_a": 2 / 61, "gate_b": 1 / 62 + 1 / 61, "gate_c": 2 / 63,
                    "flare": 1 / 64}
    # LMC (lower is better). nq: b 1.2 -> 1, a 1.6 -> 2, c 1.9 -> 3, flare 18 -> 4.
    #                        hotpotqa: b 1.5, c 1.5 -> 1, 1; a 1.9 -> 3; flare 4.0 -> 4.
    expected_lmc = {"gate_a": 1 / 62 + 1 / 63, "gate_b": 2 / 61, "gate_c": 1 / 63 + 1 / 61,
                    "flare": 2 / 64}
    for metric, expected in (("in_accuracy", expected_acc), ("roc_auc", expected_auc),
                             ("lmc", expected_lmc)):
        assert {m: rows[m].rrf[metric] for m in expected} == pytest.approx(expected), metric
    # gate_b and gate_c tie on In-Accuracy RRF and share rank 2; flare is 4th.
    assert [(row.method, row.rank) for row in board.rows[:4]] == [
        ("gate_a", 1), ("gate_b", 2), ("gate_c", 2), ("flare", 4)]
    # Reference rows: shown after the ranked ones, never ranked, means still given.
    assert [(row.method, row.rank, row.rrf["in_accuracy"]) for row in board.rows[4:]] == [
        ("never", None, None), ("always", None, None), ("ideal", None, None)]
    assert rows["never"].mean["in_accuracy"] == pytest.approx((0.30 + 0.20) / 2)
    # Means over the datasets where the metric is defined: flare's ROC-AUC is nq only.
    assert rows["flare"].mean["roc_auc"] == pytest.approx(0.55)
    assert rows["gate_b"].mean["lmc"] == pytest.approx((1.2 + 1.5) / 2)
    assert rows["flare"].values["roc_auc"] == {"nq": 0.55, "hotpotqa": None}


def test_methods_missing_from_a_dataset_gain_nothing_there():
    # "solo" runs on d1 only, where it is 2nd: RRF = 1/62. "both" is 1st twice: 2/61.
    board = build_leaderboard(_metrics({"d1": {"both": 0.9, "solo": 0.5}, "d2": {"both": 0.1}}),
                              ["in_accuracy"])
    assert {r.method: r.rrf["in_accuracy"] for r in board.rows} == pytest.approx(
        {"both": 2 / 61, "solo": 1 / 62})
    assert board.rows[1].values["in_accuracy"] == {"d1": 0.5}


def test_unknown_metric_is_an_error():
    with pytest.raises(ValueError, match="no_such_metric"):
        build_leaderboard(synthetic_metrics(), ["no_such_metric"])


def test_rows_without_kind_are_classified_by_name():
    metrics = {"datasets": {"d": {"rows": {"never": {"in_accuracy": 0.3},
                                           "perplexity": {"in_accuracy": 0.4}}}}}
    board = build_leaderboard(metrics, ["in_accuracy"])
    assert [(r.method, r.kind, r.rank) for r in board.rows] == [
        ("perplexity", "gate", 1), ("never", "reference", None)]


def test_writers_markdown_csv_json(tmp_path):
    board = build_leaderboard(synthetic_metrics())
    paths = write_leaderboard(tmp_path, board)
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv", "leaderboard.json"]

    table = list(csv.DictReader(io.StringIO(to_csv(board))))
    assert [row["method"] for row in table] == ["gate_a", "gate_b", "gate_c", "flare", "never",
                                                "always", "ideal"]
    assert table[0]["rank"] == "1" and table[4]["rank"] == ""
    assert float(table[0]["rrf_in_accuracy"]) == pytest.approx(1 / 61 + 1 / 63)
    assert float(table[1]["lmc@hotpotqa"]) == 1.5
    assert table[3]["roc_auc@hotpotqa"] == ""  # flare: undefined, empty cell

    data = json.loads(to_json(board))
    assert data["k"] == 60 and data["metrics"] == ["in_accuracy", "roc_auc", "lmc"]
    assert data["higher_is_better"] == {"in_accuracy": True, "roc_auc": True, "lmc": False}
    assert data["rows"][2]["method"] == "gate_c" and data["rows"][2]["rank"] == 2

    markdown = to_markdown(board)
    assert "k = 60" in markdown
    assert "| 1 | gate_a | gate | 0.03227 | 0.03279 | 0.03200 | 0.400 | 0.775 | 1.750 |" in markdown
    assert "| - | never | reference | - | - | - | 0.250 | - | 1.000 |" in markdown
    assert "## LMC by dataset (lower is better)" in markdown
    assert (tmp_path / "leaderboard.md").read_text() == markdown


def test_every_run_writes_the_leaderboard(tmp_path):
    from bench.report import write_results

    written = write_results(tmp_path, synthetic_metrics(), {"run_name": "x"}, {})
    names = [path.name for path in written]
    assert names[-3:] == ["leaderboard.md", "leaderboard.csv", "leaderboard.json"]
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert [row["method"] for row in board["rows"]][:4] == ["gate_a", "gate_b", "gate_c", "flare"]
    assert not (tmp_path / "report.html").exists()   # written by `arbench leaderboard` only
