"""Loading and validating question files, the study's CSV/Hub tables and source resolution."""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

import bench.data as bd
from bench.data import (
    DataError,
    HubSource,
    LocalDirSource,
    convert_adarague_rows,
    load_questions_jsonl,
    read_adarague_csv,
    resolve_source,
)

REPO = Path(__file__).resolve().parents[1]
SIX = ["nq", "squad", "triviaqa", "2wikimultihopqa", "hotpotqa", "musique"]
REAL_DEMO_DIR = bd.DEMO_DIR  # before any test patches it


# --- helpers and fixtures ---
def write_lines(path: Path, lines: list) -> Path:
    """Write rows (dicts are JSON-encoded, strings written as-is) one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n"
                            for x in lines), encoding="utf-8")
    return path


def row(i: int | str, **over) -> dict:
    base = {"id": f"q{i}", "question": f"question {i}?", "answers": [f"answer {i}"]}
    base.update(over)
    return base


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    env = os.environ.get("ARBENCH_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "nq" / "test.jsonl").is_file():
        pytest.skip(f"shared evaluation data not found at {path} "
                    "(set ARBENCH_SHARED_DATA to its location)")
    return path


@pytest.fixture(scope="session")
def shared_source(shared_dir) -> LocalDirSource:
    return LocalDirSource(shared_dir)


@pytest.fixture(scope="session")
def shared_corpus_ids(shared_source) -> dict:
    return {p.id: p for p in shared_source.corpus().passages}


@pytest.fixture(scope="session")
def hotpot_csv(shared_dir) -> Path:
    path = shared_dir / "adarague_csv" / "hotpotqa_test.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def hotpot_converted(hotpot_csv):
    return read_adarague_csv(hotpot_csv, "hotpotqa", "test")


@pytest.fixture(scope="session")
def hotpot_records(hotpot_csv) -> list[dict]:
    import pandas as pd

    return pd.read_csv(hotpot_csv, keep_default_na=False, dtype=str).to_dict("records")


# --- load_questions_jsonl: validation ---
BAD_ROWS = [
    # (bad line content, field fragment, reason fragment)
    ('{"id": "x", "question": ', "bad JSON", "Expecting value"),
    ('["q3", "question?", ["a"]]', "row", "expected a JSON object, got list"),
    ({"question": "q?", "answers": ["a"]}, "field 'id'", "missing"),
    (row(3, id=""), "field 'id'", "empty"),
    (row(3, id="   "), "field 'id'", "empty"),
    (row(3, id=17), "field 'id'", "expected a string, got int"),
    ({"id": "q3", "answers": ["a"]}, "field 'question'", "missing"),
    (row(3, question=""), "field 'question'", "empty"),
    (row(3, question=" \t "), "field 'question'", "empty"),
    (row(3, question=None), "field 'question'", "expected a string, got null"),
    ({"id": "q3", "question": "q?"}, "field 'answers'", "missing"),
    (row(3, answers="Paris"), "field 'answers'", "expected a list, got str"),
    (row(3, answers=[]), "field 'answers'", "empty list"),
    (row(3, answers=["ok", 42]), "field 'answers'", "item 1 is int, expected a string"),
    (row(3, answers=["ok", ""]), "field 'answers'", "item 1 is an empty string"),
    (row(3, answers=[None]), "field 'answers'", "item 0 is null"),
]


@pytest.mark.parametrize("bad,field,why", BAD_ROWS,
                         ids=[f"{b[1]}-{b[2]}".replace(" ", "_") for b in BAD_ROWS])
def test_jsonl_validation_errors_name_file_line_and_field(tmp_path, bad, field, why):
    path = write_lines(tmp_path / "nq" / "test.jsonl", [row(1), "", bad, row(4)])
    with pytest.raises(DataError) as err:
        load_questions_jsonl(path, "nq", "test")
    msg = str(err.value)
    assert "\n" not in msg and why in msg
    assert msg.startswith(f"{path}:3: {field}"), msg  # blank line 2 still counts


def test_jsonl_exact_messages(tmp_path):
    path = write_lines(tmp_path / "test.jsonl", [row(1), row(2, answers=[])])
    with pytest.raises(DataError, match=r"^.*test\.jsonl:2: field 'answers': empty list$"):
        load_questions_jsonl(path, "nq", "test")
    path = write_lines(tmp_path / "dup.jsonl", [row("x"), row(2), "  ", row("x")])
    with pytest.raises(DataError) as err:
        load_questions_jsonl(path, "nq", "test")
    assert str(err.value) == f"{path}:4: field 'id': duplicate id 'qx' (first on line 1)"
    path = write_lines(tmp_path / "test.jsonl", ["", "   "])
    with pytest.raises(DataError, match="no questions"):
        load_questions_jsonl(path, "nq", "test")
    with pytest.raises(DataError, match="cannot read"):
        load_questions_jsonl(tmp_path / "absent.jsonl", "nq", "test")


def test_jsonl_keeps_question_bytes_and_meta(tmp_path):
    odd = 'What is the fate of ""Carmen"" in Bizet\'s  opera? '
    path = write_lines(tmp_path / "test.jsonl", [
        row(1, question=odd, level="hard", gold_passage_ids=["wiki-1"]),
        "",
        row(2, question="line\u2028separator inside?", answers=["a", "b"]),
    ])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a UTF-8 BOM is tolerated
    qs = load_questions_jsonl(path, "triviaqa", "train")
    assert [q.id for q in qs] == ["q1", "q2"]
    assert qs[0].question == odd  # trailing and double spaces kept
    assert qs[0].meta == {"level": "hard", "gold_passage_ids": ["wiki-1"]}
    assert qs[1].question == "line\u2028separator inside?"
    assert qs[1].answers == ("a", "b")
    assert (qs[0].dataset, qs[0].split) == ("triviaqa", "train")


# --- LocalDirSource on a tiny directory ---
@pytest.fixture()
def tiny_dir(tmp_path) -> Path:
    for name in ("zeta", "hotpotqa", "nq", "alpha"):
        write_lines(tmp_path / name / "test.jsonl", [row(1), row(2)])
    write_lines(tmp_path / "nq" / "train.jsonl", [row(3)])
    write_lines(tmp_path / "beta" / "train.jsonl", [row(1)])  # no test.jsonl: not listed
    write_lines(tmp_path / "corpus" / "wiki_passages.jsonl",
                [{"id": "p1", "title": "T", "text": "some text"}])
    return tmp_path


def test_local_names_questions_and_errors(tiny_dir):
    src = LocalDirSource(tiny_dir)
    assert src.dataset_names() == ["nq", "hotpotqa", "alpha", "zeta"]
    first = src.questions("nq", "test")
    assert src.questions("nq", "test") is first
    assert [q.id for q in src.questions("nq", "train")] == ["q3"]
    with pytest.raises(DataError) as err:
        src.questions("squad", "test")
    assert str(tiny_dir) in str(err.value)
    assert "unknown dataset 'squad'" in str(err.value)
    assert "datasets available: nq, hotpotqa, alpha, zeta" in str(err.value)
    with pytest.raises(DataError, match=r"no train\.jsonl for dataset 'zeta'.*available: nq"):
        src.questions("zeta", "train")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        src.questions("nq", "dev")


def test_local_corpus_cached_missing_and_override(tiny_dir, tmp_path_factory):
    src = LocalDirSource(tiny_dir)
    corpus = src.corpus()
    assert [p.id for p in corpus.passages] == ["p1"] and src.corpus() is corpus
    (tiny_dir / "corpus" / "wiki_passages.jsonl").unlink()
    with pytest.raises(DataError) as err:
        LocalDirSource(tiny_dir).corpus()
    assert str(tiny_dir / "corpus" / "wiki_passages.jsonl") in str(err.value)
    other = write_lines(tmp_path_factory.mktemp("c") / "c.jsonl",
                        [{"id": "z9", "title": "", "text": "x"}])
    assert [p.id for p in LocalDirSource(tiny_dir, corpus_path=other).corpus().passages] == ["z9"]
    with pytest.raises(DataError, match="data directory not found"):
        LocalDirSource(tiny_dir / "nowhere")


# --- The real shared data ---
def test_shared_data_loads(shared_source):
    assert shared_source.dataset_names() == SIX
    for name in SIX:
        test = shared_source.questions(name, "test")
        train = shared_source.questions(name, "train")
        assert len(test) == 500, name
        assert len(train) == (250 if name == "squad" else 500), name
        assert not {q.id for q in test} & {q.id for q in train}, name
        assert all(q.dataset == name and q.split == "test" for q in test)
    first = shared_source.questions("nq", "test")[0]
    assert first.id == "single_nq_dev_6396"
    assert first.answers == ("President Grover Cleveland",)
    assert first.question == "who was president when france gave us the statue of liberty"
    assert shared_source.questions("hotpotqa", "test")[0].meta["level"] == "hard"


def test_shared_corpus(shared_source, shared_corpus_ids):
    corpus = shared_source.corpus()
    assert len(corpus) == 46_668
    assert len(shared_corpus_ids) == 46_668
    # The id rule used by the converter is the shared corpus rule.
    for p in corpus.passages[:200]:
        assert bd.passage_id(p.title, p.text) == p.id


# --- AdaRAGUE CSV conversion ---
def test_csv_matches_shared_jsonl(hotpot_converted, shared_source):
    questions, _ = hotpot_converted
    reference = shared_source.questions("hotpotqa", "test")
    assert len(questions) == 500

    def key(q):
        return q.id, q.answers, q.question, q.meta["gold_passage_ids"], q.meta["level"], \
            q.meta["type"]

    assert [key(q) for q in questions] == [key(q) for q in reference]  # same order too


def test_csv_passages_are_in_shared_corpus(hotpot_converted, shared_corpus_ids):
    questions, passages = hotpot_converted
    assert len(passages) == len({p.id for p in passages}) > 4_000
    for p in passages:  # all of them: same id rule, same (title, text)
        assert shared_corpus_ids[p.id] == p
    assert all(2 <= len(q.meta["gold_passage_ids"]) <= len(q.meta["context_passage_ids"])
               for q in questions)


def test_csv_none_answers_survive_as_strings(hotpot_converted, hotpot_csv):
    import pandas as pd

    none_ids = ["5ab93781554299131ca422c7", "5ae48d1755429913cc204499",
                "5a8066d15542992097ad2fe8"]  # data rows 21, 315, 489
    questions, _ = hotpot_converted
    by_id = {q.id: q for q in questions}
    assert [q.id for q in questions if q.meta["rag_one_retrieve"] == "None"] == none_ids
    assert all(isinstance(q.meta["rag_one_retrieve"], str) for q in questions)
    assert all(isinstance(q.meta["no_retrieve"], str) for q in questions)
    assert by_id[none_ids[0]].answers != ("None",)
    # Why keep_default_na=False matters: pandas' default turns them into NaN.
    default = pd.read_csv(hotpot_csv)
    assert default["rag_one_retrieve"].isna().sum() == 3


def test_csv_directory_source(shared_dir, shared_corpus_ids):
    src = bd.AdaRagueCsvSource(shared_dir / "adarague_csv")
    assert src.dataset_names() == ["2wikimultihopqa", "hotpotqa"]
    assert len(src.questions("2wikimultihopqa", "train")) == 500
    with pytest.raises(DataError, match="unknown dataset 'nq'.*2wikimultihopqa, hotpotqa"):
        src.questions("nq", "test")
    corpus = src.corpus()  # union of the context paragraphs of the four files
    assert len(corpus) == 9_823 + 6_298  # README: HotpotQA + 2Wiki context paragraphs
    assert all(p.id in shared_corpus_ids for p in corpus.passages)
    assert src.corpus() is corpus


# --- convert_adarague_rows on hand-made rows ---
CTX_ITEMS = [
    {"idx": 0, "is_supporting": True, "paragraph_text": "Paris is in France.", "title": "Paris"},
    {"idx": 1, "is_supporting": False, "paragraph_text": 'He said "hi" and {braces}.'},
]
NUMPY_CTX = "[" + "\n ".join(repr(c) for c in CTX_ITEMS) + "]"


def crow(qid="a", **over) -> dict:
    base = {"qid": qid, "question_text": "Where is Paris? ", "reference": "['France']",
            "context": NUMPY_CTX, "no_retrieve": "None", "rag_one_retrieve": "France"}
    base.update(over)
    return base


def test_convert_context_forms_agree():
    ref_q, ref_p = convert_adarague_rows([crow()], "hotpotqa", "test", "t.csv")
    assert ref_q[0].answers == ("France",)
    assert ref_q[0].question == "Where is Paris? "
    assert [(p.title, p.text) for p in ref_p] == [("Paris", "Paris is in France."),
                                                  ("", 'He said "hi" and {braces}.')]
    assert ref_p[1].id == bd.passage_id("", 'He said "hi" and {braces}.')
    assert ref_q[0].meta["gold_passage_ids"] == [ref_p[0].id]
    assert ref_q[0].meta["no_retrieve"] == "None"
    for variant in (repr(CTX_ITEMS), CTX_ITEMS, tuple(CTX_ITEMS)):
        qs, ps = convert_adarague_rows([crow(context=variant, reference=["France"])],
                                       "hotpotqa", "test", "t.csv")
        assert ps == ref_p and qs[0].answers == ("France",)
        assert qs[0].meta["context_passage_ids"] == ref_q[0].meta["context_passage_ids"]


def test_convert_hub_column_names_and_dedup():
    arrow_item = {"idx": 2, "is_supporting": None, "paragraph_text": "Third.", "title": None}
    hub_row = {"question_id": "b", "question_text": "q?", "reference": ["x", "y"],
               "contexts": [*CTX_ITEMS, arrow_item], "level": "easy"}
    qs, ps = convert_adarague_rows([crow(), hub_row], "hotpotqa", "test", "hub")
    assert [q.id for q in qs] == ["a", "b"] and qs[1].answers == ("x", "y")
    assert qs[1].meta["level"] == "easy" and "level" not in qs[0].meta
    assert len(ps) == 3 and ps[2].title == ""  # shared paragraphs stored once
    assert qs[1].meta["gold_passage_ids"] == [ps[0].id]
    qs, _ = convert_adarague_rows([crow(reference="['a' 'b']")], "squad", "test", "t")
    assert qs[0].answers == ("a", "b")  # not Python's implicit concatenation "ab"


CONVERT_ERRORS = [
    ({"qid": ""}, "field 'qid'", "empty"),
    ({"qid": None}, "field 'qid'", "expected a string"),
    ({"question_text": "  "}, "field 'question_text'", "empty"),
    ({"reference": "[Oops"}, "field 'reference'", "not a Python literal"),
    ({"reference": "__import__('os').getcwd()"}, "field 'reference'", "not a Python literal"),
    ({"reference": "'France'"}, "field 'reference'", "expected a list, got str"),
    ({"reference": "[]"}, "field 'reference'", "empty list"),
    ({"reference": "[1]"}, "field 'reference'", "item 0 is int"),
    ({"reference": "['ok', '']"}, "field 'reference'", "item 1 is an empty string"),
    ({"context": "{'a': 1}"}, "field 'context'", "expected a list, got dict"),
    ({"context": "['text']"}, "field 'context'", "item 0 is str, expected a dict"),
    ({"context": "[{'title': 'T'}]"}, "field 'context'", "'paragraph_text' missing"),
    ({"context": "[{'paragraph_text': 'x', 'title': 3}]"}, "field 'context'", "'title' is int"),
    ({"context": "[{'paragraph_text': 'x', 'is_supporting': 'False'}]"}, "field 'context'",
     "'is_supporting' must be a boolean"),
    ({"qid": "a"}, "field 'qid'", "duplicate id 'a' (first on row 1)"),
]


@pytest.mark.parametrize("over,field,why", CONVERT_ERRORS)
def test_convert_errors_name_origin_row_and_field(over, field, why):
    rows = [crow("a"), {**crow("b"), **over}]
    with pytest.raises(DataError) as err:
        convert_adarague_rows(rows, "hotpotqa", "test", "x/hotpotqa_test.csv")
    msg = str(err.value)
    assert "\n" not in msg and why in msg
    assert msg.startswith(f"x/hotpotqa_test.csv:row 2: {field}"), msg


def test_convert_missing_reference_non_mapping_missing_file(tmp_path):
    bad = crow("b")
    del bad["reference"]
    with pytest.raises(DataError, match=r"^o:row 2: field 'reference': missing$"):
        convert_adarague_rows([crow(), bad], "hotpotqa", "test", "o")
    with pytest.raises(DataError, match=r"^o:row 1: row: expected a mapping"):
        convert_adarague_rows([["a", "b"]], "hotpotqa", "test", "o")
    with pytest.raises(DataError, match="file not found"):
        read_adarague_csv(tmp_path / "nq_test.csv", "nq", "test")


# --- HubSource (datasets.load_dataset replaced by a fake module) ---
def fake_datasets(monkeypatch, tables: dict) -> list:
    """Install a fake ``datasets`` module; return the list of recorded calls."""
    calls: list = []

    def load_dataset(path, split=None, **kwargs):
        calls.append((path, split, kwargs))
        return tables[(path, split)]

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def test_hub_ids():
    assert bd.HUB_DATASETS == {"natural_questions": "nq", "trivia_qa": "triviaqa",
                               "squad": "squad", "2wikimultihopqa": "2wikimultihopqa",
                               "hotpotqa": "hotpotqa", "musique": "musique"}
    assert bd.hub_id("nq") == "VityaVitalich/adaptive_rag_natural_questions"
    assert bd.hub_id("triviaqa") == "VityaVitalich/adaptive_rag_trivia_qa"
    with pytest.raises(DataError, match="no Hub table"):
        bd.hub_id("bogus")
    assert HubSource().dataset_names() == SIX


def test_hub_matches_csv(monkeypatch, hotpot_records, hotpot_converted):
    hid = "VityaVitalich/adaptive_rag_hotpotqa"
    calls = fake_datasets(monkeypatch, {(hid, "test"): hotpot_records})
    src = HubSource(corpus_path="unused.jsonl")
    questions = src.questions("hotpotqa", "test")
    assert src.questions("hotpotqa", "test") is questions  # cached: one download
    assert calls == [(hid, "test", {})]
    csv_q, csv_p = hotpot_converted
    assert questions == csv_q  # ids, questions, answers, dataset, split
    strip = [{k: v for k, v in q.meta.items() if k != "origin"} for q in questions]
    assert strip == [{k: v for k, v in q.meta.items() if k != "origin"} for q in csv_q]
    assert src.passages("hotpotqa", "test") == csv_p
    with pytest.raises(DataError, match=r"unused\.jsonl: corpus file not found"):
        src.corpus()


def test_hub_corpus_is_union_of_contexts(monkeypatch, tmp_path):
    hid = "VityaVitalich/adaptive_rag_squad"
    other = [{"paragraph_text": "Other text.", "title": "O", "is_supporting": True}]
    fake_datasets(monkeypatch, {(hid, "test"): [crow("a")],
                                (hid, "train"): [crow("b", context=repr(other + CTX_ITEMS))]})
    src = HubSource(datasets=["squad"])
    assert src.dataset_names() == ["squad"]
    corpus = src.corpus()
    assert [p.title for p in corpus.passages] == ["Paris", "", "O"]
    assert src.corpus() is corpus
    path = write_lines(tmp_path / "c.jsonl", [{"id": "k", "title": "", "text": "t"}])
    assert len(HubSource(corpus_path=path, datasets=["squad"]).corpus()) == 1


def test_hub_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DataError, match=r"pip install 'arbench\[hub\]'"):
        HubSource().questions("nq", "test")

    def broken(path, split=None):
        raise ConnectionError("offline\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=broken))
    with pytest.raises(DataError) as err:
        HubSource().questions("musique", "train")
    assert str(err.value) == ("VityaVitalich/adaptive_rag_musique: cannot load split "
                              "'train': offline")
    with pytest.raises(DataError, match="unknown dataset 'bogus'"):
        HubSource().questions("bogus", "test")


# --- resolve_source ---
@pytest.fixture()
def two_dirs(tmp_path, monkeypatch):
    demo, mine, env = (tmp_path / n for n in ("demo", "mine", "env"))
    for d in (demo, mine, env):
        d.mkdir()
    monkeypatch.setattr(bd, "DEMO_DIR", demo)
    monkeypatch.delenv("ARBENCH_DATA", raising=False)
    return demo, mine, env


def test_resolve_precedence(two_dirs, monkeypatch):
    assert REAL_DEMO_DIR == Path(bd.__file__).parent / "demo"
    demo, mine, env = two_dirs
    assert resolve_source(None).root == demo
    assert resolve_source(None).description == "demo"
    assert resolve_source("demo").root == demo
    assert resolve_source(str(mine)).root == mine
    monkeypatch.setenv("ARBENCH_DATA", str(env))
    assert resolve_source(None).root == env
    assert resolve_source(str(mine)).root == mine  # data_dir beats the environment
    assert resolve_source("demo").root == demo
    assert isinstance(resolve_source(str(mine), hub=True), HubSource)  # hub beats all
    monkeypatch.setenv("ARBENCH_DATA", "demo")
    assert resolve_source(None).root == demo
    monkeypatch.setenv("ARBENCH_DATA", "")
    assert resolve_source(None).root == demo


def test_resolve_corpus_and_missing_dir(two_dirs, tmp_path):
    _, mine, _ = two_dirs
    corpus = tmp_path / "c.jsonl"
    assert resolve_source(str(mine), corpus=str(corpus)).corpus_path == corpus
    assert resolve_source(None, hub=True, corpus=str(corpus)).corpus_path == corpus
    assert resolve_source(str(mine)).corpus_path == mine / "corpus" / "wiki_passages.jsonl"
    with pytest.raises(DataError, match="data directory not found"):
        resolve_source(str(tmp_path / "absent"))
