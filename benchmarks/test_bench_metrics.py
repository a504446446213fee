"""Metric throughput: answer scoring, and a dataset's rows with gate fitting and selection."""
from __future__ import annotations

import numpy as np
import pytest

ANSWERS = 2000
QUESTIONS = 500
ESTIMATORS = 3


@pytest.fixture(scope="module")
def answer_pairs() -> tuple[list[str], list[list[str]]]:
    """Real gold answers of the demo set, each also used as a longer wrong/right prediction."""
    from bench.data import resolve_source

    source = resolve_source("demo")
    golds = [list(q.answers) for name in source.dataset_names()
             for split in ("test", "train") for q in source.questions(name, split)]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(golds), size=ANSWERS)
    others = rng.integers(0, len(golds), size=ANSWERS)
    predictions = [f"I think it is {golds[o][0]}, in fact." for o in others]
    return predictions, [golds[p] for p in picks]


def test_answer_scoring_per_second(benchmark, throughput, answer_pairs):
    from bench.metrics import score_answers

    predictions, golds = answer_pairs
    scores = benchmark.pedantic(score_answers, args=(predictions, golds), rounds=3,
                                iterations=1)
    assert len(scores["in_accuracy"]) == ANSWERS
    throughput("In-Accuracy + EM + F1", ANSWERS, "answers/s")


def test_dataset_evaluation_per_second(benchmark, throughput, answer_pairs):
    """Reference rows plus one gate per estimator, fit on train, scored on test."""
    from bench.evaluation import SplitAnswers, evaluate_dataset

    predictions, golds = answer_pairs
    rng = np.random.default_rng(1)

    def split(offset: int) -> SplitAnswers:
        part = slice(offset, offset + QUESTIONS)
        return SplitAnswers(golds=golds[part], never=predictions[part],
                            always=[g[0] for g in golds[part]],
                            scores={f"u{i}": rng.normal(size=QUESTIONS)
                                    for i in range(ESTIMATORS)})

    train, test = split(0), split(QUESTIONS)
    result = benchmark.pedantic(evaluate_dataset, args=(test, train), rounds=2, iterations=1)
    assert len(result["rows"]) == 3 + ESTIMATORS
    throughput(f"dataset rows ({QUESTIONS} test + {QUESTIONS} train)", ESTIMATORS,
               "gated estimators/s")
