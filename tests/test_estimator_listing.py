"""The estimator listing: the study's 27, costs, and the README table generated from it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import estimator_table_markdown, main
from bench.statistics import CALCULATORS

STUDY_27 = {
    "Perplexity", "MeanTokenEntropy", "MaxTokenEntropy", "MedianTokenEntropy",
    "MinTokenEntropy", "MeanMaximumTokenProbability", "MaxMaximumTokenProbability",
    "MedianMaximumTokenProbability", "MinMaximumTokenProbability",
    "MeanPointwiseMutualInformation", "MeanConditionalPointwiseMutualInformation",
    "RenyiNeg", "FisherRao", "CCP", "PTrue", "Verbalized1S", "SemanticEntropy", "SAR",
    "SentenceSAR", "NumSemSets", "EigValLaplacian_NLI_score_entail",
    "DegMat_NLI_score_entail", "Eccentricity_NLI_score_entail", "LexicalSimilarity_rougeL",
    "MahalanobisDistanceSeq_decoder", "RelativeMahalanobisDistanceSeq_decoder",
    "RDESeq_decoder"}


def listing(capsys) -> list[dict]:
    assert main(["estimators", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_at_least_35_estimators_with_every_study_column(capsys):
    items = listing(capsys)
    assert len(items) >= 35
    study = [i["study_name"] for i in items if i["study_name"] and i["study_name"] != "hybrid"]
    assert set(study) == STUDY_27 and len(study) == 27
    assert any(i["study_name"] == "hybrid" for i in items)


def test_costs_follow_the_declared_statistics(capsys):
    items = {i["name"]: i for i in listing(capsys)}
    assert items["perplexity"]["lm_cost"] == {"generate_calls": "0", "forward_passes": "0",
                                              "aux": ""}
    assert items["lexical_similarity"]["lm_cost"]["generate_calls"] == "N"
    assert items["mean_pmi"]["lm_cost"]["forward_passes"] == "1"
    # The semantic matrix is derived from the samples, so it carries their cost.
    assert items["deg_mat"]["lm_cost"]["generate_calls"] == "N"
    assert items["deg_mat"]["lm_cost"]["aux"] == "N^2 pairs"
    assert items["r3_reflective_confidence"]["lm_cost"] == {
        "generate_calls": "N", "forward_passes": "N", "aux": ""}
    assert {i["training"] for i in items.values()} == {"untrained", "fit", "supervised",
                                                       "label-free"}


def test_calculators_compute_from_what_their_statistic_declares():
    for stat, calc in CALCULATORS.items():
        assert set(stat.derived_from) <= set(calc.depends), stat.name


def test_readme_table_is_the_generated_one():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("\n", readme.index("<!-- estimators:begin")) + 1
    end = readme.index("<!-- estimators:end -->")
    assert readme[start:end] == estimator_table_markdown(), (
        "README estimator table is stale: regenerate with `arbench estimators --markdown`")


def test_estimator_groups_expand_and_deduplicate():
    from bench.runner import select_estimators

    study = select_estimators(["study"])
    assert len(study) == 28 and "hybrid_ue" in study and "eigenscore" not in study
    mixed = select_estimators(["perplexity", "study", "eigenscore"])
    assert mixed[0] == "perplexity" and mixed[-1] == "eigenscore"
    assert len(mixed) == 29
    with pytest.raises(KeyError, match="unknown estimator 'nope'"):
        select_estimators(["nope"])


def test_single_pass_group_needs_only_the_greedy_pass():
    from bench.runner import select_estimators

    single = select_estimators(["single-pass"])
    assert {"perplexity", "mean_token_entropy", "maximum_sequence_probability", "renyi_neg",
            "fisher_rao", "saplma", "relative_mahalanobis_distance"} <= set(single)
    # Each of these declares one more statistic than the greedy pass.
    assert not {"ccp", "mean_pmi", "p_true", "token_sar", "eigenscore", "hybrid_ue",
                "dragin_rind", "introspection_stability"} & set(single)
    assert len(single) == 21
