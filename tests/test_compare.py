"""``arbench compare`` and ``compare_metrics`` on two hand-edited metrics.json files."""
from __future__ import annotations

import copy
import json

import pytest

from bench.cli import main
from bench.compare import (
    ONLY_IN_A,
    ONLY_IN_B,
    UNDEFINED,
    compare,
    compare_metrics,
    load_metrics,
    metric_deltas,
)
from tests.report_fixtures import synthetic_metrics


def _run_pair(tmp_path):
    """Run A = the fixture; run B = A with hand-made changes (listed in the comments)."""
    a = synthetic_metrics()
    b = copy.deepcopy(a)
    b["datasets"]["nq"]["rows"]["gate_a"]["in_accuracy"] = 0.52   # +0.02
    b["datasets"]["nq"]["rows"]["gate_b"]["lmc"] = 1.2005         # +0.0005
    b["datasets"]["hotpotqa"]["rows"]["gate_c"]["roc_auc"] = None  # 0.65 -> undefined
    b["datasets"]["hotpotqa"]["rows"]["flare"]["roc_auc"] = None   # null in both: equal
    del b["datasets"]["hotpotqa"]["rows"]["gate_b"]                # method only in A
    b["datasets"]["nq"]["rows"]["gate_a"]["prr"] = 0.3             # metric only in B
    b["datasets"]["squad"] = copy.deepcopy(a["datasets"]["nq"])    # dataset only in B
    folders = []
    for name, metrics in (("run_a", a), ("run_b", b)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(metrics))
        folders.append(folder)
    return a, b, folders


def test_deltas_are_b_minus_a_and_flagged_beyond_tolerance(tmp_path):
    a, b, _ = _run_pair(tmp_path)
    values = {(v.dataset, v.method, v.metric): v for v in metric_deltas(a, b, tolerance=0.001)}
    acc = values[("nq", "gate_a", "in_accuracy")]
    assert (acc.a, acc.b, acc.delta, acc.flagged) == (0.5, 0.52, pytest.approx(0.02), True)
    lmc = values[("nq", "gate_b", "lmc")]
    assert lmc.delta == pytest.approx(0.0005) and not lmc.flagged   # within 0.001
    unchanged = values[("nq", "never", "in_accuracy")]
    assert unchanged.delta == 0.0 and not unchanged.flagged
    undefined = values[("hotpotqa", "gate_c", "roc_auc")]
    assert (undefined.a, undefined.b, undefined.delta, undefined.reason) == (
        0.65, None, None, UNDEFINED) and undefined.flagged
    both_null = values[("hotpotqa", "flare", "roc_auc")]
    assert both_null.delta is None and not both_null.flagged
    # "kind" is text, not a metric; a method present in one run only is not compared.
    assert ("nq", "gate_a", "kind") not in values
    assert not any(key[:2] == ("hotpotqa", "gate_b") for key in values)
    # Numeric fields (kind excluded): reference rows 7, gates and pipeline 8 (+ ece).
    # nq: 3 x 7 + 4 x 8 = 53; hotpotqa without gate_b: 3 x 7 + 3 x 8 = 45.
    assert len(values) == 53 + 45


def test_compare_metrics_lists_only_what_differs(tmp_path):
    a, b, _ = _run_pair(tmp_path)
    found = {(d.dataset, d.method, d.metric, d.reason) for d in compare_metrics(a, b, 0.001)}
    assert found == {
        ("nq", "gate_a", "in_accuracy", "delta"),
        ("hotpotqa", "gate_c", "roc_auc", UNDEFINED),
        ("squad", None, None, ONLY_IN_B),
        ("hotpotqa", "gate_b", None, ONLY_IN_A),
        ("nq", "gate_a", "prr", ONLY_IN_B),
    }
    # Tolerance 0 also catches the 0.0005 change; identical runs give nothing.
    assert ("nq", "gate_b", "lmc") in {(d.dataset, d.method, d.metric)
                                       for d in compare_metrics(a, b)}
    assert compare_metrics(a, copy.deepcopy(a)) == []
    with pytest.raises(ValueError, match="tolerance"):
        compare(a, b, -1)


def test_cli_text_and_json(tmp_path, capsys):
    _, _, (run_a, run_b) = _run_pair(tmp_path)
    assert main(["compare", str(run_a), str(run_b), "--tolerance", "0.001", "--changed"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["dataset", "method", "metric", "A", "B", "delta"]
    rows = [line.split() for line in lines]
    assert ["nq", "gate_a", "in_accuracy", "0.5", "0.52", "+0.02", "!"] in rows
    assert ["nq", "gate_b", "lmc", "1.2", "1.2005", "+0.0005"] in rows   # not flagged
    assert ["hotpotqa", "gate_c", "roc_auc", "0.65", "-", "-", "!"] in rows
    assert "98 values compared, 2 differ, 2 beyond tolerance 0.001" in text
    assert "only in B: squad" in lines and "only in A: hotpotqa / gate_b" in lines
    assert "only in B: nq / gate_a / prr" in lines
    assert not any(row[:2] == ["nq", "never"] for row in rows)   # unchanged: hidden

    assert main(["compare", str(run_a), str(run_b / "metrics.json"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compared"] == 98 and report["tolerance"] == 0.0
    assert report["flagged"] == 3 + 3   # 2 deltas + 1 undefined; 3 one-run-only items
    first = report["values"][0]
    assert set(first) == {"dataset", "method", "metric", "a", "b", "delta", "flagged", "reason"}


def test_unreadable_input_is_an_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="not found"):
        load_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'datasets'"):
        load_metrics(tmp_path)
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "no 'datasets'" in capsys.readouterr().err
