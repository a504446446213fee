"""The committed pipeline run (results/pipelines-l30/) is complete, and its rows are what its
per-question traces give."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.data.local import load_questions_jsonl
from bench.leaderboard import build_leaderboard, to_json
from bench.metrics.qa import exact_match, in_accuracy

RUN = Path(__file__).resolve().parents[1] / "results" / "pipelines-l30"
DATASETS = ("2wikimultihopqa", "hotpotqa", "musique", "nq", "squad", "triviaqa")
PIPELINES = ("adaptive_rag", "dragin", "flare", "ircot", "rowen_cl", "rowen_cm",
             "rowen_hybrid", "seakr")
LIMIT = 30


def _metrics() -> dict:
    return json.loads((RUN / "metrics.json").read_text())


def _trace(dataset: str, pipeline: str) -> list[dict]:
    lines = (RUN / "pipelines" / dataset / f"{pipeline}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_run_has_every_pipeline_and_gate_on_the_six_datasets():
    metrics = _metrics()
    config = json.loads((RUN / "config.json").read_text())
    assert (config["limit"], config["estimators"], config["pipelines"]) == (LIMIT, ["all"], ["all"])
    assert tuple(sorted(metrics["datasets"])) == DATASETS
    for name, dataset in metrics["datasets"].items():
        kinds = [row["kind"] for row in dataset["rows"].values()]
        assert dataset["n_test"] == LIMIT, name
        assert (kinds.count("pipeline"), kinds.count("gate"), kinds.count("reference")) \
            == (len(PIPELINES), 49, 3), name


def test_committed_leaderboard_is_the_one_its_metrics_give():
    board = build_leaderboard(_metrics())
    assert json.loads(to_json(board)) == json.loads((RUN / "leaderboard.json").read_text())


@pytest.mark.parametrize("dataset", DATASETS)
def test_pipeline_rows_are_what_their_traces_give(dataset, shared_data):
    questions = load_questions_jsonl(shared_data / dataset / "test.jsonl", dataset, "test")[:LIMIT]
    golds = {q.id: q.answers for q in questions}
    rows = _metrics()["datasets"][dataset]["rows"]
    for pipeline in PIPELINES:
        trace = _trace(dataset, pipeline)
        assert [t["id"] for t in trace] == [q.id for q in questions], pipeline
        row = rows[pipeline]
        expected = {
            "in_accuracy": np.mean([in_accuracy(t["answer"], golds[t["id"]]) for t in trace]),
            "em": np.mean([exact_match(t["answer"], golds[t["id"]]) for t in trace]),
            "rc": np.mean([t["cost"]["retrieval_calls"] for t in trace]),
            "lmc": np.mean([t["cost"]["prefills"] for t in trace]),
        }
        for metric, value in expected.items():
            assert row[metric] == pytest.approx(value, abs=1e-6), (pipeline, metric)


def test_adaptive_rag_row_equals_ircot_where_its_router_always_picks_route_c():
    rows = _metrics()["datasets"]
    for dataset in ("2wikimultihopqa", "hotpotqa", "musique"):
        answers = [t["answer"] for t in _trace(dataset, "adaptive_rag")]
        assert answers == [t["answer"] for t in _trace(dataset, "ircot")], dataset
        assert rows[dataset]["rows"]["adaptive_rag"]["in_accuracy"] \
            == rows[dataset]["rows"]["ircot"]["in_accuracy"]
