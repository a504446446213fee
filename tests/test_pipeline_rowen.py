"""Rowen-CL, -CM and -Hybrid: scripted control flow, request order and the hybrid score."""
from __future__ import annotations

import numpy as np
import pytest

from bench.models.hf_backend import SamplingConfig
from bench.pipelines import PIPELINES, create_pipeline
from bench.pipelines.base import VERIFIER, Generate, Judge, Retrieve, Sample
from bench.pipelines.rowen import (
    RowenCL,
    RowenCM,
    RowenHybrid,
    RowenHybridSettings,
    RowenSettings,
    answer_messages,
    chinese_answer_messages,
    clean_perturbations,
    hybrid_consistency,
    paraphrase_messages,
    to_chinese_messages,
    to_english_messages,
    unique_passages,
)
from tests.pipeline_harness import context, generation, passage, question, sample_set, script

QUESTION = "Who wrote Hamlet?"
# Six samples: a labelled one, a repeat (case aside), an empty one and a quoted one.
SAMPLES = ("1. Which author wrote Hamlet?", "Who is the author of Hamlet?", "",
           "which author wrote hamlet?", 'Question: "Hamlet was written by whom?"',
           "Who is the author of Hamlet?")
PERTURBED = ("Which author wrote Hamlet?", "Who is the author of Hamlet?",
             "Hamlet was written by whom?")
SAMPLING = SamplingConfig(n=6, temperature=1.0, top_k=50, max_new_tokens=48)
PASSAGE_A = passage("a", "Hamlet is a tragedy by William Shakespeare.")
PASSAGE_B = passage("b", "Shakespeare wrote plays in London.")
# Rewrite i: English answer EN[i], Chinese question ZH_Q[i], Chinese answer ZH_A[i],
# its back-translation BACK[i], the verifier's answer VER[i].
EN = ("Shakespeare", "William Shakespeare", "Marlowe")
ZH_Q = ("哪位作者写了哈姆雷特？", "哈姆雷特的作者是谁？", "哈姆雷特是谁写的？")
ZH_A = ("莎士比亚", "威廉·莎士比亚", "狄更斯")
BACK = ("Shakespeare.", "William Shakespeare.", "Dickens.")
VER = ("W. Shakespeare", "Shakespeare, William", "Ben Jonson")


def responder(cl_similarity=(0.9, 0.6, 0.3), cm_similarity=(0.8, 0.7, 0.3),
              samples=SAMPLES, hits=((PASSAGE_A,), (PASSAGE_A,), (PASSAGE_B,))):
    """Answers every request by its exact content; an unexpected request fails."""
    tpl = context().template
    replies = {(tpl.closed(QUESTION), "main"): "Christopher Marlowe",
               (tpl.augmented(QUESTION, [PASSAGE_A, PASSAGE_B]), "main"): "William Shakespeare"}
    for i, p in enumerate(PERTURBED):
        replies[(answer_messages(p), "main")] = EN[i]
        replies[(to_chinese_messages(p), "main")] = ZH_Q[i]
        replies[(chinese_answer_messages(ZH_Q[i]), "main")] = ZH_A[i]
        replies[(to_english_messages(ZH_A[i]), "main")] = BACK[i]
        replies[(answer_messages(p), VERIFIER)] = VER[i]
    similarity = {**{(EN[i], BACK[i]): s for i, s in enumerate(cl_similarity)},
                  **{(EN[i], VER[i]): s for i, s in enumerate(cm_similarity)}}
    retrieved = dict(zip(PERTURBED, hits))

    def respond(request):
        if isinstance(request, Generate):
            return generation(replies[(request.messages, request.model)])
        if isinstance(request, Sample):
            assert request.messages == paraphrase_messages(QUESTION)
            return sample_set([generation(t) for t in samples])
        if isinstance(request, Judge):
            return np.array([similarity[pair] for pair in request.pairs])
        if isinstance(request, Retrieve):
            return list(retrieved[request.query])
        raise AssertionError(f"unexpected request {request!r}")
    return respond


def opening() -> list:
    return [Generate(context().template.closed(QUESTION), context().greedy),
            Sample(paraphrase_messages(QUESTION), SAMPLING)]


def cross_language_requests() -> tuple[list, list, list]:
    greedy = context().greedy
    return ([Generate(to_chinese_messages(p), greedy) for p in PERTURBED],
            [Generate(chinese_answer_messages(z), greedy) for z in ZH_Q],
            [Generate(to_english_messages(a), greedy) for a in ZH_A])


def english_answers() -> list:
    return [Generate(answer_messages(p), context().greedy) for p in PERTURBED]


def verifier_answers() -> list:
    return [Generate(answer_messages(p), context().greedy, VERIFIER) for p in PERTURBED]


def repair() -> list:
    return [*[Retrieve(p, 1) for p in PERTURBED],
            Generate(context().template.augmented(QUESTION, [PASSAGE_A, PASSAGE_B]),
                     context().greedy)]


CL_JUDGE = Judge(tuple(zip(EN, BACK)))
CM_JUDGE = Judge(tuple(zip(EN, VER)))


def test_clean_perturbations_strips_labels_drops_empties_and_repeats():
    assert clean_perturbations(SAMPLES, QUESTION) == PERTURBED
    assert clean_perturbations(["- 2) Where is Paris?", "  "], QUESTION) == ("Where is Paris?",)
    assert clean_perturbations(["", " ", '""'], QUESTION) == (QUESTION,)


def test_hybrid_consistency_on_hand_computed_numbers():
    assert hybrid_consistency(0.3, 0.6, 1.0) == pytest.approx(0.45)
    assert hybrid_consistency(0.3, 0.6, 1.0, normalise=False) == pytest.approx(0.9)
    assert hybrid_consistency(0.3, 0.9, 0.5) == pytest.approx(0.5)   # (0.3 + 0.45) / 1.5
    assert hybrid_consistency(0.3, 0.9, 0.5, normalise=False) == pytest.approx(0.75)
    assert hybrid_consistency(0.8, 0.2, 0.0) == pytest.approx(0.8)


def test_unique_passages_keeps_first_occurrence_order():
    assert unique_passages([[PASSAGE_B], [PASSAGE_A, PASSAGE_B], []]) == [PASSAGE_B, PASSAGE_A]


def test_cl_consistent_keeps_closed_book_answer():
    # CL similarities 0.9, 0.6, 0.3: mean 0.6 >= 0.5, no retrieval.
    outcome, log = script(RowenCL(context()), question(QUESTION), responder())
    to_zh, zh_answers, back = cross_language_requests()
    assert log == [*opening(), *english_answers(), *to_zh, *zh_answers, *back, CL_JUDGE]
    assert outcome.answer == "Christopher Marlowe"
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.4)
    assert outcome.queries == ()
    assert outcome.steps == 1


def test_cl_inconsistent_retrieves_top1_per_rewrite_and_repairs():
    # CL similarities 0.5, 0.2, 0.2: mean 0.3 < 0.5; passage a comes back twice, used once.
    outcome, log = script(RowenCL(context()), question(QUESTION),
                          responder(cl_similarity=(0.5, 0.2, 0.2)))
    to_zh, zh_answers, back = cross_language_requests()
    assert log == [*opening(), *english_answers(), *to_zh, *zh_answers, *back, CL_JUDGE,
                   *repair()]
    assert outcome.answer == "William Shakespeare"
    assert outcome.retrieve_first is True
    assert outcome.trigger_score == pytest.approx(0.7)
    assert outcome.queries == PERTURBED
    assert outcome.steps == 2


def test_cm_consistent_asks_the_verifier_and_keeps_answer():
    # CM similarities 0.8, 0.7, 0.3: mean 0.6; the CL similarities are never asked for.
    outcome, log = script(RowenCM(context()), question(QUESTION), responder())
    assert log == [*opening(), *english_answers(), *verifier_answers(), CM_JUDGE]
    assert [r.model for r in log if isinstance(r, Generate)] == ["main"] * 4 + ["verifier"] * 3
    assert outcome.answer == "Christopher Marlowe"
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.4)
    assert outcome.queries == ()


def test_cm_inconsistent_retrieves_and_repairs():
    # CM similarities 0.4, 0.4, 0.1: mean 0.3 < 0.5.
    outcome, log = script(RowenCM(context()), question(QUESTION),
                          responder(cm_similarity=(0.4, 0.4, 0.1)))
    assert log == [*opening(), *english_answers(), *verifier_answers(), CM_JUDGE, *repair()]
    assert outcome.answer == "William Shakespeare"
    assert outcome.retrieve_first is True
    assert outcome.trigger_score == pytest.approx(0.7)
    assert outcome.queries == PERTURBED


def hybrid_log() -> list:
    to_zh, zh_answers, back = cross_language_requests()
    return [*opening(), *english_answers(), *to_zh, *verifier_answers(), *zh_answers, *back,
            CL_JUDGE, CM_JUDGE]


def test_hybrid_consistent_combines_both_checks():
    # CL 0.6 (0.9, 0.6, 0.3), CM 0.6 (0.8, 0.7, 0.3): (0.6 + 0.6) / 2 = 0.6.
    outcome, log = script(RowenHybrid(context()), question(QUESTION), responder())
    assert log == hybrid_log()
    assert outcome.answer == "Christopher Marlowe"
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.4)


def test_hybrid_inconsistent_when_normalised_but_not_as_raw_sum():
    # CL 0.3 (0.5, 0.2, 0.2), CM 0.6: normalised 0.45 < 0.5 retrieves; the study's raw
    # sum 0.9 >= 0.5 does not.
    respond = responder(cl_similarity=(0.5, 0.2, 0.2))
    outcome, log = script(RowenHybrid(context()), question(QUESTION), respond)
    assert log == [*hybrid_log(), *repair()]
    assert outcome.answer == "William Shakespeare"
    assert outcome.retrieve_first is True
    assert outcome.trigger_score == pytest.approx(0.55)
    assert outcome.queries == PERTURBED

    raw = RowenHybrid(context(), RowenHybridSettings(normalise_hybrid=False))
    outcome, log = script(raw, question(QUESTION), respond)
    assert log == hybrid_log()
    assert outcome.answer == "Christopher Marlowe"
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.1)


def test_hybrid_alpha_weights_cross_model():
    # alpha 3: (0.3 + 3 * 0.6) / 4 = 0.525 >= 0.5, no retrieval.
    pipeline = create_pipeline("rowen_hybrid", context(), {"cm_consistency_alpha": 3.0})
    outcome, _ = script(pipeline, question(QUESTION), responder(cl_similarity=(0.5, 0.2, 0.2)))
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.475)


def test_all_empty_samples_fall_back_to_the_question():
    pipeline = RowenCM(context())
    respond = responder(samples=("", "  ") * 3)

    def with_original(request):
        if isinstance(request, Generate) and request.messages == answer_messages(QUESTION):
            return generation("Marlowe" if request.model == "main" else "Shakespeare")
        if isinstance(request, Judge):
            assert request.pairs == (("Marlowe", "Shakespeare"),)
            return np.array([0.2])
        if isinstance(request, Retrieve):
            assert request == Retrieve(QUESTION, 1)
            return [PASSAGE_A, PASSAGE_B]
        return respond(request)

    outcome, log = script(pipeline, question(QUESTION), with_original)
    assert [r for r in log if isinstance(r, Retrieve)] == [Retrieve(QUESTION, 1)]
    assert outcome.queries == (QUESTION,)
    assert outcome.answer == "William Shakespeare"
    assert outcome.trigger_score == pytest.approx(0.8)


def test_registration_roles_and_settings():
    assert {n: (PIPELINES[n].study_name, PIPELINES[n].models)
            for n in ("rowen_cl", "rowen_cm", "rowen_hybrid")} == {
        "rowen_cl": ("Rowen-CL", ("main",)),
        "rowen_cm": ("Rowen-CM", ("main", "verifier")),
        "rowen_hybrid": ("Rowen-Hybrid", ("main", "verifier"))}
    assert RowenSettings().to_dict() == {
        "n_perturbations": 6, "perturbation_temperature": 1.0, "perturbation_top_k": 50,
        "perturbation_max_new_tokens": 48, "consistency_threshold": 0.5,
        "passages_per_query": 1}
    assert RowenHybridSettings().cm_consistency_alpha == 1.0
    with pytest.raises(ValueError, match="cm_consistency_alpha"):
        create_pipeline("rowen_cl", context(), {"cm_consistency_alpha": 2.0})
    with pytest.raises(ValueError, match=">= 0"):
        RowenHybridSettings(cm_consistency_alpha=-0.5)


def test_n_perturbations_sets_the_sample_count():
    pipeline = create_pipeline("rowen_cl", context(), {"n_perturbations": 3})
    _, log = script(pipeline, question(QUESTION), responder())
    assert log[1] == Sample(paraphrase_messages(QUESTION),
                            SamplingConfig(n=3, temperature=1.0, top_k=50, max_new_tokens=48))
