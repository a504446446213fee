"""The committed reference run (results/reference/) is complete and self-consistent."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.leaderboard import build_leaderboard, to_json

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
DATASETS = {"2wikimultihopqa", "hotpotqa", "musique", "nq", "squad", "triviaqa"}


def _metrics() -> dict:
    return json.loads((REFERENCE / "metrics.json").read_text())


def test_reference_covers_every_test_question_of_the_six_datasets():
    metrics = _metrics()
    assert set(metrics["datasets"]) == DATASETS
    config = json.loads((REFERENCE / "config.json").read_text())
    assert config["limit"] is None and config["estimators"] == ["single-pass"]
    for name, dataset in metrics["datasets"].items():
        assert dataset["n_test"] == 500, name
        gates = [row for row in dataset["rows"].values() if row["kind"] == "gate"]
        assert len(gates) == 21, name
        # Every gate was chosen among the five decision makers, on dev.
        for estimator, gate in dataset["gates"].items():
            assert set(gate["candidates"]) == {"threshold", "logistic", "knn", "mlp", "tree"}, \
                (name, estimator)


def test_committed_leaderboard_is_the_one_its_metrics_give():
    board = build_leaderboard(_metrics())
    assert json.loads(to_json(board)) == json.loads((REFERENCE / "leaderboard.json").read_text())


def test_data_hashes_match_the_shared_data(shared_data):
    for line in (REFERENCE / "data.sha256").read_text().splitlines():
        digest, relative = line.split(maxsplit=1)
        path = shared_data / relative
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, relative
