"""``arbench score``: evaluate answers (and optional estimator scores) produced elsewhere."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.data.schema import DataError, Question
from bench.evaluation import SplitAnswers, evaluate_dataset
from retrievers.base import read_jsonl_rows


def read_predictions(path: str | Path, questions: list[Question]
                     ) -> SplitAnswers:
    """Align a predictions JSONL file with a dataset split.

    Rows: ``{"id", "no_retrieve", "rag_one_retrieve", "scores": {name: float}}``;
    ``scores`` is optional but, if any row has it, every row must list the
    same estimators. Ids must match the split exactly (both directions).
    """
    path = Path(path)
    rows: dict[str, dict] = {}
    for lineno, obj in read_jsonl_rows(path, DataError)[1]:
        qid = obj.get("id")
        if not isinstance(qid, str) or not qid:
            raise DataError(f"{path}:{lineno}: field 'id': missing or empty")
        if qid in rows:
            raise DataError(f"{path}:{lineno}: field 'id': duplicate id {qid!r}")
        for field in ("no_retrieve", "rag_one_retrieve"):
            if not isinstance(obj.get(field), str):
                raise DataError(f"{path}:{lineno}: field '{field}': missing or not a string")
        scores = obj.get("scores", {})
        if not isinstance(scores, dict) or not all(
                (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None
                for v in scores.values()):
            raise DataError(f"{path}:{lineno}: field 'scores': expected {{name: number}}")
        obj["_line"] = lineno
        rows[qid] = obj
    ids = [q.id for q in questions]
    id_set = set(ids)
    unknown = [i for i in rows if i not in id_set]
    missing = [i for i in ids if i not in rows]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"{len(unknown)} id(s) not in the dataset: {_preview(unknown)}")
        if missing:
            parts.append(f"{len(missing)} dataset id(s) missing from the file: "
                         f"{_preview(missing)}")
        raise DataError(f"{path}: " + "; ".join(parts))
    names = sorted({n for r in rows.values() for n in r.get("scores", {})})
    for qid in ids:
        lacking = [n for n in names if n not in rows[qid].get("scores", {})]
        if lacking:
            raise DataError(f"{path}:{rows[qid]['_line']}: field 'scores': missing {lacking}")
    scores = {n: np.array([_num(rows[q]["scores"][n]) for q in ids]) for n in names}
    return SplitAnswers(golds=[q.answers for q in questions],
                        never=[rows[q]["no_retrieve"] for q in ids],
                        always=[rows[q]["rag_one_retrieve"] for q in ids], scores=scores)


def _num(value) -> float:
    return math.nan if value is None else float(value)


def _preview(ids: list[str], n: int = 5) -> str:
    shown = ", ".join(ids[:n])
    return shown + (f", … (+{len(ids) - n} more)" if len(ids) > n else "")


def score_predictions(test_questions: list[Question], predictions: str | Path,
                      train_questions: list[Question] | None = None,
                      train_predictions: str | Path | None = None,
                      dev_fraction: float = 0.2, seed: int = 0) -> dict:
    """Rows for one dataset split; gates need ``train_predictions`` with the same scores."""
    test = read_predictions(predictions, test_questions)
    train = None
    if train_predictions is not None:
        if train_questions is None:
            raise ValueError("train questions are needed to read train predictions")
        train = read_predictions(train_predictions, train_questions)
        absent = sorted(set(test.scores) - set(train.scores))
        if absent:
            raise DataError(f"{train_predictions}: field 'scores': no train scores for {absent}")
    elif test.scores:
        raise DataError(f"{predictions}: rows carry 'scores', so gates must be fit: "
                        "pass --train-predictions")
    return evaluate_dataset(test, train, dev_fraction, seed)
