"""``arbench score``: predictions produced elsewhere, scored against a local data directory.

The toy data set is the one of tests/test_evaluation.py; the hand computation is
repeated here in short.

Test (need = 1 - InAcc(Never) = [F, T, F, T]):
 t0 gold Paris              Never "Paris"        (1,1,1)    Always "London"            (0,0,0)
 t1 gold George Washington  Never "Washington"   (0,0,2/3)  Always "George Washington" (1,1,1)
 t2 gold 1969               Never "It was 1969." (1,0,1/2)  Always "1969"              (1,1,1)
 t3 gold blue whale | ...   Never "a shark"      (0,0,0)    Always "whale"             (0,0,2/3)
    (InAcc, EM, F1)

 never : InAcc 0.5,  EM 0.25, F1 (1 + 2/3 + 1/2 + 0)/4 = 13/24, RC 0,   LMC 1
 always: InAcc 0.5,  EM 0.5,  F1 (0 + 1 + 1 + 2/3)/4  = 2/3,   RC 1,   LMC 1
 ideal : retrieve t1, t3 -> InAcc 0.75, EM (1+1+0+0)/4 = 0.5,
         F1 (1 + 1 + 1/2 + 2/3)/4 = 19/24, RC 0.5, LMC 1.5

Train: need is T exactly where "unc" >= 0.4 (scores 0.1 F, 0.2 F, 0.3 F, 0.4 T,
0.6 T, 0.8 T). With --dev-fraction 0 the gate searches linspace(0.1, 0.8, 100)
and the first point above 0.3 is k = 29: t = 0.1 + 29 * 0.7/99 = 0.30505, +1.
Test "unc" = [0.2, 0.9, 0.95, null]: decision [F, T, T, T] ->
 InAcc [1,1,1,0] 0.75, EM 0.75, F1 (3 + 2/3)/4 = 11/12, RC 0.75, LMC 1.75,
 accuracy 0.75 (t2 retrieved without need), over 0, under 0.25, nan_scores 1,
 ROC-AUC 3/4 (NaN ranks first: 1.95 > 0.95 > 0.9 > 0.2; the only misordered pair is
 positive 0.9 below negative 0.95).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.gates import ThresholdGate

VENV_ARBENCH = Path(sys.executable).parent / "arbench"

TEST_ROWS = [
    ("t0", "What is the capital of France?", ["Paris"], "Paris", "London", 0.2),
    ("t1", "Who was the first US president?", ["George Washington"], "Washington",
     "George Washington", 0.9),
    ("t2", "When did Apollo 11 land?", ["1969"], "It was 1969.", "1969", 0.95),
    ("t3", "What is the largest animal?", ["blue whale", "balaenoptera musculus"], "a shark",
     "whale", None),
]
TRAIN_ROWS = [
    ("r0", "Capital of Japan?", ["Tokyo"], "Tokyo", "Tokyo", 0.1),
    ("r1", "Red planet?", ["Mars"], "Venus", "Mars", 0.8),
    ("r2", "Author of Hamlet?", ["Shakespeare"], "William Shakespeare", "Shakespeare", 0.3),
    ("r3", "O is the symbol of?", ["oxygen"], "hydrogen", "oxygen", 0.6),
    ("r4", "How many days in a week?", ["7"], "seven", "7", 0.4),
    ("r5", "Longest river in Africa?", ["Nile"], "The Nile river", "Nile", 0.2),
]

EXPECTED = {
    "never": {"in_accuracy": 0.5, "em": 0.25, "f1": 13 / 24, "rc": 0.0, "lmc": 1.0},
    "always": {"in_accuracy": 0.5, "em": 0.5, "f1": 2 / 3, "rc": 1.0, "lmc": 1.0},
    "ideal": {"in_accuracy": 0.75, "em": 0.5, "f1": 19 / 24, "rc": 0.5, "lmc": 1.5},
}
GATE = {"in_accuracy": 0.75, "em": 0.75, "f1": 11 / 12, "rc": 0.75, "lmc": 1.75,
        "accuracy": 0.75, "over_confidence": 0.0, "under_confidence": 0.25, "roc_auc": 0.75}


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_jsonl(root / "toy" / "test.jsonl",
                [{"id": i, "question": q, "answers": a} for i, q, a, *_ in TEST_ROWS])
    write_jsonl(root / "toy" / "train.jsonl",
                [{"id": i, "question": q, "answers": a} for i, q, a, *_ in TRAIN_ROWS])
    write_jsonl(root / "corpus" / "wiki_passages.jsonl", [
        {"id": "p1", "title": "Paris", "text": "Paris is the capital of France."},
        {"id": "p2", "title": "Blue whale", "text": "The blue whale is the largest animal."},
    ])
    return root


def prediction_rows(rows, with_scores: bool) -> list[dict]:
    out = []
    for qid, _, _, never, always, score in rows:
        row = {"id": qid, "no_retrieve": never, "rag_one_retrieve": always}
        if with_scores:
            row["scores"] = {"unc": score}
        out.append(row)
    return out[::-1]   # file order differs from dataset order: rows are matched by id


@pytest.fixture
def preds(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "preds.jsonl", prediction_rows(TEST_ROWS, False))


@pytest.fixture
def scored_preds(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "scored.jsonl", prediction_rows(TEST_ROWS, True))


@pytest.fixture
def train_preds(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train_preds.jsonl", prediction_rows(TRAIN_ROWS, True))


def score(data_dir: Path, predictions: Path, *extra: str) -> list[str]:
    return ["score", "--data-dir", str(data_dir), "--dataset", "toy",
            "--predictions", str(predictions), *extra]


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_values(row: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-12), key


# --------------------------------------------------------------------------- #
# Successful runs
# --------------------------------------------------------------------------- #
def test_reference_rows(capsys, data_dir, preds):
    out = run_json(capsys, score(data_dir, preds))
    assert set(out) == {"rows", "gates"}
    assert set(out["rows"]) == {"never", "always", "ideal"}
    assert out["gates"] == {}
    for name, expected in EXPECTED.items():
        assert_values(out["rows"][name], expected)
        assert out["rows"][name]["kind"] == "reference"
        assert out["rows"][name]["roc_auc"] is None          # NaN is written as null
    # Self-knowledge of the fixed decisions against need [F, T, F, T].
    assert_values(out["rows"]["never"], {"accuracy": 0.5, "over_confidence": 0.5,
                                         "under_confidence": 0.0})
    assert_values(out["rows"]["ideal"], {"accuracy": 1.0, "over_confidence": 0.0,
                                         "under_confidence": 0.0})


def test_gate_rows_with_train_predictions(capsys, data_dir, scored_preds, train_preds):
    out = run_json(capsys, score(data_dir, scored_preds, "--train-predictions",
                                 str(train_preds), "--dev-fraction", "0"))
    assert set(out["rows"]) == {"never", "always", "ideal", "unc"}
    for name, expected in EXPECTED.items():
        assert_values(out["rows"][name], expected)
    row = out["rows"]["unc"]
    assert row["kind"] == "gate"
    assert_values(row, GATE)
    assert row["nan_scores"] == 1
    assert out["gates"]["unc"]["chosen"] == "threshold"
    gate = out["gates"]["unc"]["candidates"]["threshold"]
    assert gate["direction"] == 1
    assert gate["threshold"] == pytest.approx(0.1 + 29 * 0.7 / 99, abs=1e-12)
    assert gate["fit_accuracy"] == 1.0 and gate["dev_accuracy"] == 1.0


def test_default_dev_split_and_seed_reach_the_gate(capsys, data_dir, scored_preds,
                                                   train_preds):
    # Train rows in dataset order r0..r5: scores and need as in the module docstring.
    scores = np.array([r[5] for r in TRAIN_ROWS])
    need = np.array([False, True, False, True, True, False])
    for seed in ("0", "7"):
        out = run_json(capsys, score(data_dir, scored_preds, "--train-predictions",
                                     str(train_preds), "--seed", seed))
        expected = ThresholdGate.fit(scores, need, dev_fraction=0.2, seed=int(seed))
        assert (out["gates"]["unc"]["candidates"]["threshold"]
                == pytest.approx(expected.to_dict()))


def test_train_predictions_without_test_scores(capsys, data_dir, preds, train_preds):
    out = run_json(capsys, score(data_dir, preds, "--train-predictions", str(train_preds)))
    assert set(out["rows"]) == {"never", "always", "ideal"} and out["gates"] == {}


def test_bom_and_blank_lines_are_tolerated(capsys, tmp_path, data_dir):
    lines = [json.dumps(r) for r in prediction_rows(TEST_ROWS, False)]
    path = tmp_path / "bom.jsonl"
    path.write_text("\ufeff" + "\n\n".join(lines) + "\n\n", encoding="utf-8")
    out = run_json(capsys, score(data_dir, path))
    assert_values(out["rows"]["never"], EXPECTED["never"])


def test_table_output(capsys, data_dir, preds):
    assert main(score(data_dir, preds)) == 0
    text = capsys.readouterr().out
    assert "toy  (test n=4, train n=0, need-retrieval rate 0.500)" in text
    cells = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    # method in_accuracy em f1 rc lmc roc_auc accuracy generate_calls
    assert cells["never"] == ["never", "0.500", "0.250", "0.542", "0.000", "1.000", "-",
                              "0.500", "-"]
    assert cells["always"] == ["always", "0.500", "0.500", "0.667", "1.000", "1.000", "-",
                               "0.500", "-"]
    assert cells["ideal"] == ["ideal", "0.750", "0.500", "0.792", "0.500", "1.500", "-",
                              "1.000", "-"]


def test_console_script(tmp_path, data_dir, scored_preds, train_preds):
    if not VENV_ARBENCH.is_file():
        pytest.skip(f"console script not installed at {VENV_ARBENCH}")
    proc = subprocess.run(
        [str(VENV_ARBENCH), *score(data_dir, scored_preds, "--train-predictions",
                                   str(train_preds), "--dev-fraction", "0")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert "method" in lines
    assert lines["never"][1:6] == ["0.500", "0.250", "0.542", "0.000", "1.000"]
    assert lines["always"][1:6] == ["0.500", "0.500", "0.667", "1.000", "1.000"]
    assert lines["ideal"][1:6] == ["0.750", "0.500", "0.792", "0.500", "1.500"]
    # unc: QA columns, then roc_auc 0.750 and accuracy 0.750, no cost column.
    assert lines["unc"][1:] == ["0.750", "0.750", "0.917", "0.750", "1.750", "0.750",
                                "0.750", "-"]
    assert "train n=6" in proc.stdout


def test_console_script_error(tmp_path, data_dir):
    if not VENV_ARBENCH.is_file():
        pytest.skip(f"console script not installed at {VENV_ARBENCH}")
    missing = tmp_path / "nope.jsonl"
    proc = subprocess.run([str(VENV_ARBENCH), *score(data_dir, missing)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("arbench: error: ")
    assert "Traceback" not in proc.stderr and str(missing) in proc.stderr


# --------------------------------------------------------------------------- #
# Errors: exit code 2, one line on stderr naming the problem
# --------------------------------------------------------------------------- #
def run_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("arbench: error: ") and err.endswith("\n")
    assert err.count("\n") == 1, err
    return err.strip()


def test_ids_not_in_dataset(capsys, tmp_path, data_dir):
    rows = prediction_rows(TEST_ROWS, False) + [
        {"id": "zz9", "no_retrieve": "x", "rag_one_retrieve": "y"},
        {"id": "zz8", "no_retrieve": "x", "rag_one_retrieve": "y"}]
    path = write_jsonl(tmp_path / "extra.jsonl", rows)
    err = run_error(capsys, score(data_dir, path))
    assert str(path) in err
    assert "2 id(s) not in the dataset: zz9, zz8" in err


def test_dataset_ids_missing_from_file(capsys, tmp_path, data_dir):
    rows = [r for r in prediction_rows(TEST_ROWS, False) if r["id"] not in ("t1", "t3")]
    path = write_jsonl(tmp_path / "short.jsonl", rows)
    err = run_error(capsys, score(data_dir, path))
    assert "2 dataset id(s) missing from the file: t1, t3" in err


def test_both_directions_reported_together(capsys, tmp_path, data_dir):
    rows = prediction_rows(TEST_ROWS, False)
    rows[0] = dict(rows[0], id="other")                # t3 renamed (rows are reversed)
    path = write_jsonl(tmp_path / "swap.jsonl", rows)
    err = run_error(capsys, score(data_dir, path))
    assert "1 id(s) not in the dataset: other" in err
    assert "1 dataset id(s) missing from the file: t3" in err


def test_bad_json_line(capsys, tmp_path, data_dir):
    rows = prediction_rows(TEST_ROWS, False)
    path = write_jsonl(tmp_path / "bad.jsonl", rows[:2] + ['{"id": "t1", oops'] + rows[2:])
    err = run_error(capsys, score(data_dir, path))
    assert f"{path}:3: bad JSON" in err


def test_missing_no_retrieve(capsys, tmp_path, data_dir):
    rows = prediction_rows(TEST_ROWS, False)
    del rows[1]["no_retrieve"]
    path = write_jsonl(tmp_path / "noanswer.jsonl", rows)
    err = run_error(capsys, score(data_dir, path))
    assert f"{path}:2: field 'no_retrieve'" in err


def test_non_string_rag_answer(capsys, tmp_path, data_dir):
    rows = prediction_rows(TEST_ROWS, False)
    rows[3]["rag_one_retrieve"] = None
    path = write_jsonl(tmp_path / "null.jsonl", rows)
    err = run_error(capsys, score(data_dir, path))
    assert f"{path}:4: field 'rag_one_retrieve'" in err


def test_duplicate_id(capsys, tmp_path, data_dir):
    rows = prediction_rows(TEST_ROWS, False)
    path = write_jsonl(tmp_path / "dup.jsonl", rows + [rows[0]])
    err = run_error(capsys, score(data_dir, path))
    assert f"{path}:5: field 'id': duplicate id 't3'" in err


def test_scores_without_train_predictions(capsys, data_dir, scored_preds):
    err = run_error(capsys, score(data_dir, scored_preds))
    assert str(scored_preds) in err and "--train-predictions" in err


def test_scores_missing_on_some_rows(capsys, tmp_path, data_dir, train_preds):
    rows = prediction_rows(TEST_ROWS, True)
    del rows[2]["scores"]                                  # t1, on line 3
    path = write_jsonl(tmp_path / "partial.jsonl", rows)
    err = run_error(capsys, score(data_dir, path, "--train-predictions", str(train_preds)))
    assert f"{path}:3: field 'scores': missing ['unc']" in err


@pytest.mark.parametrize("value", ["high", True, [0.5]])
def test_non_numeric_score(capsys, tmp_path, data_dir, train_preds, value):
    rows = prediction_rows(TEST_ROWS, True)
    rows[0]["scores"]["unc"] = value
    path = write_jsonl(tmp_path / "badscore.jsonl", rows)
    err = run_error(capsys, score(data_dir, path, "--train-predictions", str(train_preds)))
    assert f"{path}:1: field 'scores'" in err


def test_train_predictions_lack_an_estimator(capsys, tmp_path, data_dir, scored_preds):
    path = write_jsonl(tmp_path / "train_plain.jsonl", prediction_rows(TRAIN_ROWS, False))
    err = run_error(capsys, score(data_dir, scored_preds, "--train-predictions", str(path)))
    assert str(path) in err and "'unc'" in err


def test_train_predictions_checked_against_train_ids(capsys, tmp_path, data_dir,
                                                     scored_preds):
    # Test predictions passed as train predictions: ids t0..t3 are not train ids.
    err = run_error(capsys, score(data_dir, scored_preds, "--train-predictions",
                                  str(scored_preds)))
    assert "4 id(s) not in the dataset: t3, t2, t1, t0" in err
    assert "6 dataset id(s) missing from the file: r0, r1, r2, r3, r4, … (+1 more)" in err


def test_missing_predictions_file(capsys, tmp_path, data_dir):
    missing = tmp_path / "nope.jsonl"
    err = run_error(capsys, score(data_dir, missing))
    assert f"{missing}: cannot read" in err


def test_predictions_not_utf8(capsys, tmp_path, data_dir):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "t0", "no_retrieve": "caf\xe9"}\n')
    err = run_error(capsys, score(data_dir, path))
    assert f"{path}: not UTF-8" in err


def test_unknown_dataset(capsys, data_dir, preds):
    argv = score(data_dir, preds)
    argv[argv.index("toy")] = "nosuch"
    err = run_error(capsys, argv)
    assert "unknown dataset 'nosuch'" in err and "toy" in err


def test_empty_predictions_file(capsys, tmp_path, data_dir):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    err = run_error(capsys, score(data_dir, path))
    assert "4 dataset id(s) missing from the file: t0, t1, t2, t3" in err


def test_nan_literal_score_counts_as_missing_score(capsys, tmp_path, data_dir, train_preds):
    # Python's json accepts the NaN literal; it is treated like null (a NaN score
    # that retrieves): same results as the null in the fixture.
    lines = [json.dumps(r) for r in prediction_rows(TEST_ROWS, True)]
    lines = [line.replace("null", "NaN") for line in lines]
    path = tmp_path / "nanlit.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_json(capsys, score(data_dir, path, "--train-predictions", str(train_preds),
                                 "--dev-fraction", "0"))
    assert_values(out["rows"]["unc"], GATE)
    assert out["rows"]["unc"]["nan_scores"] == 1
    assert not math.isnan(out["rows"]["unc"]["spearman"])
