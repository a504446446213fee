"""Properties of the built-in demo data set in ``bench/data/demo``.

The files are read directly (not through the loaders), so these tests pin the
data itself: counts, ids, evidence links, the two-hop share and the corpus.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "bench" / "data" / "demo"
QUESTION_FILES = {split: DEMO / "demo" / f"{split}.jsonl" for split in ("test", "train")}
CORPUS_FILE = DEMO / "corpus" / "wiki_passages.jsonl"
TYPES = {"single-hop": 1, "two-hop": 2}  # type -> number of gold passages


def _read_jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path} must end with a newline"
    lines = text.split("\n")[:-1]
    assert all(line.strip() for line in lines), f"{path} has blank lines"
    rows = [json.loads(line) for line in lines]
    assert all(isinstance(row, dict) for row in rows)
    return rows


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _mentions(alias: str, text: str) -> bool:
    """Whole-word, case-insensitive occurrence of ``alias`` in ``text``."""
    return re.search(r"(?<!\w)" + re.escape(alias.casefold()) + r"(?!\w)", text.casefold()) is not None


@pytest.fixture(scope="module")
def questions() -> dict[str, list[dict]]:
    return {split: _read_jsonl(path) for split, path in QUESTION_FILES.items()}


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return _read_jsonl(CORPUS_FILE)


@pytest.fixture(scope="module")
def passages(corpus) -> dict[str, dict]:
    return {row["id"]: row for row in corpus}


def _all_questions(questions):
    return [q for split in ("test", "train") for q in questions[split]]


def test_counts(questions, corpus):
    assert len(questions["test"]) == 60
    assert len(questions["train"]) == 60
    assert len(corpus) >= 250


def test_question_ids_unique_across_splits(questions):
    ids = [q["id"] for q in _all_questions(questions)]
    assert len(ids) == len(set(ids))
    for split, rows in questions.items():
        assert all(q["id"].startswith(f"demo-{split}-") for q in rows)


def test_splits_share_no_question_text(questions):
    test = {_norm(q["question"]) for q in questions["test"]}
    train = {_norm(q["question"]) for q in questions["train"]}
    assert len(test) == 60 and len(train) == 60, "duplicate question inside a split"
    assert not test & train


def test_question_rows_well_formed(questions, passages):
    for q in _all_questions(questions):
        assert isinstance(q["question"], str) and q["question"].strip(), q["id"]
        assert isinstance(q["answers"], list) and q["answers"], q["id"]
        assert all(isinstance(a, str) and a.strip() for a in q["answers"]), q["id"]
        assert len(set(q["answers"])) == len(q["answers"]), q["id"]
        assert q["dataset"] == "demo", q["id"]
        assert q["type"] in TYPES, q["id"]
        gold = q["gold_passage_ids"]
        assert len(gold) == TYPES[q["type"]], q["id"]
        assert len(set(gold)) == len(gold), q["id"]
        missing = [pid for pid in gold if pid not in passages]
        assert not missing, f"{q['id']}: gold passages not in corpus: {missing}"
        assert q["gold_evidence_in_corpus"] is True, q["id"]


def test_answer_in_last_evidence_passage(questions, passages):
    bad = []
    for q in _all_questions(questions):
        text = passages[q["gold_passage_ids"][-1]]["text"].casefold()
        if not any(a.casefold() in text for a in q["answers"]):
            bad.append(q["id"])
    assert not bad, f"no gold alias in the evidence passage of {bad}"


def test_answer_not_given_away(questions, passages):
    """The question never states its answer, and a two-hop question's first
    (bridge) passage does not contain it: the second hop is needed."""
    bad = []
    for q in _all_questions(questions):
        if any(_mentions(a, q["question"]) for a in q["answers"]):
            bad.append((q["id"], "answer in question"))
        if q["type"] == "two-hop":
            first = passages[q["gold_passage_ids"][0]]["text"]
            if any(_mentions(a, first) for a in q["answers"]):
                bad.append((q["id"], "answer in first hop"))
    assert not bad, bad


def test_two_hop_share(questions):
    for split, rows in questions.items():
        two_hop = sum(q["type"] == "two-hop" for q in rows)
        assert two_hop / len(rows) >= 0.35, split
        assert two_hop < len(rows), f"{split} has no single-hop questions"


def test_evidence_not_shared_between_splits(questions):
    test = {pid for q in questions["test"] for pid in q["gold_passage_ids"]}
    train = {pid for q in questions["train"] for pid in q["gold_passage_ids"]}
    assert not test & train


def test_passages_well_formed(corpus):
    ids = [row["id"] for row in corpus]
    assert len(ids) == len(set(ids))
    for row in corpus:
        assert set(row) == {"id", "title", "text", "source"}, row["id"]
        assert row["source"] == "arbench-demo", row["id"]
        assert row["title"].strip(), row["id"]
        assert len(row["text"].split()) >= 20, row["id"]
    texts = [_norm(row["text"]) for row in corpus]
    assert len(texts) == len(set(texts)), "duplicated passage text"


def test_corpus_sorted_by_title(corpus):
    titles = [row["title"] for row in corpus]
    assert titles == sorted(titles)


def test_corpus_has_distractors(questions, corpus):
    gold = {pid for q in _all_questions(questions) for pid in q["gold_passage_ids"]}
    distractors = [row for row in corpus if row["id"] not in gold]
    assert len(distractors) >= 100
