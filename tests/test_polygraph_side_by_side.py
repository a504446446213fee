"""Pure helpers of benchmarks/polygraph_side_by_side.py (the script itself runs in `tox -e peer`)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import estimators as registry
from benchmarks.polygraph_side_by_side import (
    PAIRS,
    ToolRun,
    format_report,
    merge_runs,
    parse_args,
    select_pairs,
    spearman,
    turns,
)


def test_every_pair_names_a_registered_arbench_estimator():
    assert {pair.arbench for pair in PAIRS} <= set(registry.ESTIMATORS)
    assert len({pair.arbench for pair in PAIRS}) == len(PAIRS)


def test_pair_classes_exist_in_lm_polygraph():
    poly = pytest.importorskip("lm_polygraph.estimators")
    assert [p.polygraph for p in PAIRS if not hasattr(poly, p.polygraph)] == []


def test_sign_flips_only_the_estimators_arbench_negates():
    assert {p.arbench for p in PAIRS if p.sign == -1} == {"renyi_neg", "fisher_rao"}


def test_select_pairs_expands_groups_in_order_and_drops_duplicates():
    sampling = select_pairs(["sampling"])
    assert [p.arbench for p in sampling] == ["lexical_similarity", "mc_sequence_entropy",
                                             "mc_normalized_sequence_entropy", "eigenscore"]
    mixed = select_pairs(["perplexity", "single-pass", "perplexity"])
    assert mixed[0].arbench == "perplexity"
    assert [p.arbench for p in mixed].count("perplexity") == 1
    assert not any(p.sampling for p in mixed)
    assert len(select_pairs(["all"])) == len(PAIRS)


def test_select_pairs_rejects_an_estimator_lm_polygraph_does_not_share():
    with pytest.raises(ValueError, match="unknown estimator 'semantic_entropy'"):
        select_pairs(["semantic_entropy"])


def test_parse_args_defaults():
    args = parse_args([])
    assert (args.limit, args.samples, args.threads, args.batch_size) == (100, 10, 2, 16)
    assert args.dataset == "nq" and args.split == "test" and args.dtype == "bfloat16"
    assert [p.arbench for p in args.pairs] == [p.arbench for p in PAIRS]


@pytest.mark.parametrize("argv, message", [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--max-new-tokens", "1"], "--max-new-tokens must be at least 2"),
    (["--estimators", "ccp"], "unknown estimator 'ccp'"),
    (["--samples", "1"], "--samples must be at least 2"),
    (["--slice", "0"], "--slice must be at least 1"),
])
def test_parse_args_rejects_bad_values_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_one_sample_is_fine_without_sampling_estimators():
    args = parse_args(["--samples", "1", "--estimators", "perplexity"])
    assert [p.arbench for p in args.pairs] == ["perplexity"]


def test_spearman_ignores_non_finite_positions():
    rho, n = spearman([1.0, 2.0, np.nan, 3.0, 4.0], [10.0, 20.0, 5.0, 30.0, np.inf])
    assert (rho, n) == (1.0, 3)
    rho, n = spearman([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0])
    assert rho == pytest.approx(-1.0) and n == 4


def test_spearman_is_nan_when_undefined():
    assert math.isnan(spearman([1.0, 2.0], [1.0, 2.0])[0])
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])[0])


def _run(wall: float, cpu: float, texts: list[str], scores: dict, phases: dict) -> ToolRun:
    return ToolRun(wall, cpu, greedy_tokens=30, sample_tokens=200, greedy_texts=texts,
                   scores={k: np.asarray(v, dtype=float) for k, v in scores.items()},
                   phases=phases)


def test_format_report_gives_ratio_agreement_and_sign_corrected_spearman():
    pairs = select_pairs(["perplexity", "renyi_neg"])
    arbench = _run(10.0, 18.0, ["Paris", "1945 ", "x"],
                   {"perplexity": [1, 2, 3], "renyi_neg": [1, 2, 3]}, {"greedy": 6.0})
    polygraph = _run(45.0, 81.0, ["Paris", "1945", "y"],
                     {"perplexity": [0.1, 0.2, 0.3], "renyi_neg": [3, 2, 1]},
                     {"EntropyCalculator": 5.0, "GreedyProbsCalculator": 30.0})
    text = format_report({"questions": 3}, arbench, polygraph, pairs,
                         {"at start": (2.0, 1.5, 1.0)})
    assert "speed-up (lm-polygraph wall / arbench wall): 4.50x (cpu: 4.50x)" in text
    assert "identical greedy answers: 2/3" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()}
    assert rows["perplexity"][-3:] == ["+1", "1.000", "3"]
    # LM-Polygraph's Rényi score falls as uncertainty rises; the sign makes it agree.
    assert rows["renyi_neg"][-3:] == ["-1", "1.000", "3"]
    table_row = next(line for line in text.splitlines()
                     if line.startswith("lm-polygraph ") and "by statistic" not in line)
    assert table_row.split() == ["lm-polygraph", "45.00", "81.00", "30", "200"]
    assert ("lm-polygraph seconds by statistic: GreedyProbsCalculator 30.0, EntropyCalculator "
            "5.0; everything else (estimators, bookkeeping) 10.0") in text
    assert "arbench seconds by statistic: greedy 6.0; everything else" in text
    assert "load average (1, 5, 15 min) at start: 2.00, 1.50, 1.00" in text


def test_turns_cover_every_question_once_and_swap_who_goes_first():
    assert turns(40, 16, "polygraph") == [
        (0, 16, ("polygraph", "arbench")),
        (16, 32, ("arbench", "polygraph")),
        (32, 40, ("polygraph", "arbench")),
    ]
    assert turns(5, 16, "arbench") == [(0, 5, ("arbench", "polygraph"))]


def test_merge_runs_adds_times_tokens_and_phases_and_concatenates_in_order():
    a = _run(2.0, 3.0, ["a"], {"perplexity": [0.5]}, {"greedy": 1.0})
    b = _run(4.0, 5.0, ["b", "c"], {"perplexity": [0.1, 0.2]}, {"greedy": 2.0, "samples": 1.5})
    merged = merge_runs(a, b)
    assert (merged.wall_seconds, merged.cpu_seconds) == (6.0, 8.0)
    assert (merged.greedy_tokens, merged.sample_tokens) == (60, 400)
    assert merged.greedy_texts == ["a", "b", "c"]
    assert merged.scores["perplexity"].tolist() == [0.5, 0.1, 0.2]
    assert merged.phases == {"greedy": 3.0, "samples": 1.5}
    assert a.phases == {"greedy": 1.0}
