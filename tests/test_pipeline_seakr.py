"""SeaKR's control flow with scripted drafts, sample hidden states and retrieval.

Sample sets hold two samples whose middle-layer hidden means are chosen so the
EigenScore (1/2) log det(Z J_d Z^T + 1e-3 I) is known by hand (each row below
already has feature mean 0, so J_d leaves it unchanged):

* SAME   = two copies of (1,-1,0,0): Gram [[2,2],[2,2]], eigenvalues 4 and 0,
  score (ln 4.001 + ln 0.001) / 2 = -2.7606.
* SPREAD = (1,-1,0,0), (0,0,1,-1): Gram diag(2,2), score ln 2.001 = 0.6936.
* WIDE   = (2,-2,0,0), (0,0,2,-2): Gram diag(8,8), score ln 8.001 = 2.0796.

With ``eigen_threshold`` 0.0, SAME is confident and SPREAD and WIDE are not.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from bench.pipelines import PIPELINES
from bench.pipelines.base import Generate, Retrieve, Sample
from bench.pipelines.seakr import SeaKR, eigen_score
from bench.pipelines.text import cot_messages
from tests.pipeline_harness import context, generation, passage, question, sample_set, script

SAME_SCORE = (math.log(4.001) + math.log(0.001)) / 2
SPREAD_SCORE = math.log(2.001)
WIDE_SCORE = math.log(8.001)

Q = "Who was president of the United States when the Eiffel Tower was finished?"
A, B, C = (passage("a", "Opened in 1887.", "Tower A"), passage("b", "Completed in 1889.", "Tower B"),
           passage("c", "Built in 1890.", "Tower C"))
D, E = passage("d", "Harrison served 1889-1893.", "Harrison"), passage("e", "Cleveland.", "Grover")
STEP_1 = "The Eiffel Tower was completed in 1889."


def samples(*rows) -> object:
    """A sample set whose middle recorded layer (row 0) has the given hidden means;
    the last layer (row 1) holds a large constant that would change every score."""
    return sample_set([generation(f"sample {i}", hidden=np.array([row, [50.0, 0, 0, 0]]))
                       for i, row in enumerate(rows)])


def same():
    return samples([1, -1, 0, 0], [1, -1, 0, 0])


def spread():
    return samples([1, -1, 0, 0], [0, 0, 1, -1])


def wide():
    return samples([2, -2, 0, 0], [0, 0, 2, -2])


class Script:
    """Answers each request kind from its own queue, in order."""

    def __init__(self, generations=(), sample_sets=(), retrievals=()) -> None:
        self.queues = {Generate: list(generations), Sample: list(sample_sets),
                       Retrieve: list(retrievals)}

    def __call__(self, request):
        queue = self.queues[type(request)]
        assert queue, f"unscripted request {request!r}"
        return queue.pop(0)

    def exhausted(self) -> bool:
        return not any(self.queues.values())


def seakr(**overrides) -> SeaKR:
    settings = SeaKR.Settings().updated({"samples": 2, "eigen_threshold": 0.0, **overrides})
    return SeaKR(context(), settings)


def kinds(requests) -> list[str]:
    return [type(r).__name__[0] for r in requests]


def step_one_draft():
    """Draft of step 1: 'Eiffel' is sure (p .95), 'Tower' is in the question,
    'completed' (p .85) and '1889' (p .4) are unsure; the rest are stopwords."""
    return generation(STEP_1, probs=[.99, .95, .5, .99, .85, .99, .4, .9])


def test_eigen_score_reads_hidden_mean_of_middle_layer_and_drops_blank_samples():
    spread_set = spread()
    moved = [replace(s, hidden_last=np.full((2, 4), 9.0, np.float32)) for s in spread_set.samples]
    blank = generation("", hidden=np.array([[7.0, 0, 0, -7.0], [0, 0, 0, 0]]))
    assert eigen_score(sample_set([*moved, blank])) == pytest.approx(SPREAD_SCORE, abs=1e-6)
    assert eigen_score(same()) == pytest.approx(SAME_SCORE, abs=1e-6)
    assert eigen_score(wide()) == pytest.approx(WIDE_SCORE, abs=1e-6)
    assert math.isnan(eigen_score(sample_set([moved[0], blank])))


def test_registered_with_study_settings_except_samples_and_threshold():
    assert PIPELINES["seakr"] is SeaKR and SeaKR.study_name == "SeaKR"
    assert SeaKR.Settings().to_dict() == {
        "samples": 10, "eigen_threshold": None, "prob_threshold": 0.1, "retrieve_k": 3,
        "max_docs": 5, "max_reasoning_steps": 7}


def test_confident_steps_never_retrieve_and_steps_read_wins():
    respond = Script(
        generations=[generation(STEP_1 + " Benjamin Harrison was president."),
                     generation("So the answer is: Benjamin Harrison."),
                     generation("It opened under Harrison. So the answer is: Benjamin Harrison."),
                     generation("So the answer is: Grover Cleveland.")],
        sample_sets=[same(), same(), same(), spread()])
    outcome, requests = script(seakr(), question(Q), respond)
    assert respond.exhausted()
    assert kinds(requests) == list("GSGSGSGS")
    assert requests[0].messages == requests[1].messages == cot_messages(Q)
    assert requests[1].config.n == 2 and requests[1].config.temperature == 1.0
    assert requests[2].messages == cot_messages(Q, reasoning=STEP_1)
    assert requests[4].messages[-1] == ("user", f"{STEP_1}\n\nQuestion: {Q}")
    assert requests[6].messages == cot_messages(Q)
    assert outcome.answer == "Benjamin Harrison"
    assert outcome.queries == () and outcome.steps == 2
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(SAME_SCORE, abs=1e-6)


def test_uncertain_step_retrieves_with_sure_words_and_keeps_least_uncertain_snippet():
    respond = Script(
        generations=[step_one_draft(),
                     generation("The Eiffel Tower opened in 1887."), generation(STEP_1),
                     generation("The tower was built in 1890."),
                     generation("So the answer is: Benjamin Harrison."),
                     generation("So the answer is: Benjamin Harrison."),
                     generation("Harrison was president in 1889. So the answer is: Harrison.")],
        sample_sets=[spread(), wide(), same(), spread(), spread(), spread(), same()],
        retrievals=[[A, B, C]])
    outcome, requests = script(seakr(), question(Q), respond)
    assert respond.exhausted()
    assert kinds(requests) == list("GSR" + "GSGSGS" + "GS" + "GSGS")
    assert requests[2] == Retrieve("Eiffel Tower", 3)
    assert [r.messages for r in requests[3:9:2]] == [cot_messages(Q, [A]), cot_messages(Q, [B]),
                                                     cot_messages(Q, [C])]
    # B's step scored SAME (-2.76) below C (0.69) and A (2.08): B is kept, its step continues.
    assert requests[9].messages == cot_messages(Q, [B], STEP_1)
    # The uncertain answer draft ends the loop without a search (SeaKR's check_final_step).
    assert requests[11].messages[-1] == ("user", f"{STEP_1}\n\nQuestion: {Q}")
    assert requests[13].messages == cot_messages(Q, [B])
    assert outcome.answer == "Harrison"  # passages read SAME beats steps read SPREAD
    assert outcome.queries == ("Eiffel Tower",) and outcome.steps == 2
    assert outcome.retrieve_first is True
    assert outcome.trigger_score == pytest.approx(SPREAD_SCORE, abs=1e-6)


def test_second_search_skips_kept_passage_stops_at_max_docs_and_forces_an_answer():
    step_two = "Benjamin Harrison was president of the United States in 1889."
    # 'president' is in the question, '1889' in the last step; the names are unsure.
    draft_two = generation("Benjamin Harrison was president in 1889.",
                           tokens=["Benjamin", " Harrison", " was", " president", " in",
                                   " 1889", ".", "\n"],
                           probs=[.3, .3, .99, .5, .99, .5, .99, .9])
    respond = Script(
        generations=[step_one_draft(), generation("Opened 1887."), generation(STEP_1),
                     draft_two, generation(step_two), generation("Grover Cleveland led."),
                     generation("Harrison was president then."),
                     generation("So the answer is: Benjamin Harrison."),
                     generation("President Harrison.")],
        sample_sets=[spread(), wide(), same(), spread(), same(), wide(), same(), spread()],
        retrievals=[[A, B], [B, D, E]])
    outcome, requests = script(seakr(max_docs=2), question(Q), respond)
    assert respond.exhausted()
    assert kinds(requests) == list("GSR" + "GSGS" + "GSR" + "GSGS" + "GSGS" + "G")
    assert [r for r in requests if isinstance(r, Retrieve)] == [
        Retrieve("Eiffel Tower", 3), Retrieve("president 1889", 3)]
    assert [r.messages for r in requests[10:14:2]] == [cot_messages(Q, [B, D], STEP_1),
                                                       cot_messages(Q, [B, E], STEP_1)]
    assert requests[14].messages[-1] == ("user", f"{STEP_1} {step_two}\n\nQuestion: {Q}")
    assert requests[16].messages == cot_messages(Q, [B, D])
    forced = requests[18].messages
    assert forced[-2] == ("user", f"{STEP_1} {step_two}\n\nQuestion: {Q}")
    assert forced[-1] == ("continuation", "So the answer is: ")
    assert outcome.answer == "President Harrison"  # forced steps read: SAME < SPREAD
    assert outcome.queries == ("Eiffel Tower", "president 1889") and outcome.steps == 2


def test_step_limit_keeps_first_sentences_and_unknown_read_loses():
    respond = Script(
        generations=[generation("Step one. Extra words."), generation("Step two."),
                     generation("Step three. More."), generation("So the answer is: three."),
                     generation("So the answer is: unknown.")],
        sample_sets=[same(), same(), same(), wide(), same()])
    outcome, requests = script(seakr(max_reasoning_steps=3), question(Q), respond)
    assert respond.exhausted()
    assert kinds(requests) == list("GSGSGS" + "GSGS")
    assert requests[4].messages[-1] == ("continuation", "Step one. Step two. ")
    assert requests[6].messages[-1] == (
        "user", f"Step one. Step two. Step three.\n\nQuestion: {Q}")
    assert outcome.answer == "three"
    assert outcome.steps == 3 and outcome.queries == () and outcome.retrieve_first is False


def test_repeated_query_ends_the_loop_and_drops_the_uncertain_draft():
    fallback = "president United States Eiffel Tower finished"
    respond = Script(
        generations=[generation("Nobody can say.", probs=[.2, .2, .2, .9]),
                     generation("Tower facts matter."),
                     generation("Hard to tell.", probs=[.2, .2, .2, .9]),
                     generation("So the answer is: Harrison."),
                     generation("So the answer is: Cleveland.")],
        sample_sets=[spread(), same(), spread(), same(), spread()],
        retrievals=[[A]])
    outcome, requests = script(seakr(), question(Q), respond)
    assert respond.exhausted()
    assert kinds(requests) == list("GSR" + "GS" + "GS" + "GSGS")
    assert requests[2] == Retrieve(fallback, 3)
    assert requests[7].messages[-1] == ("user", f"Tower facts matter.\n\nQuestion: {Q}")
    assert outcome.queries == (fallback,) and outcome.steps == 1
    assert outcome.answer == "Harrison"


def test_search_with_nothing_new_ends_the_loop():
    respond = Script(
        generations=[step_one_draft(), generation(STEP_1),
                     generation("Maybe someone.", probs=[.2, .2, .9]),
                     generation("So the answer is: Harrison."),
                     generation("So the answer is: Cleveland.")],
        sample_sets=[spread(), same(), spread(), spread(), same()],
        retrievals=[[B], [B]])
    outcome, requests = script(seakr(), question(Q), respond)
    assert respond.exhausted()
    assert kinds(requests) == list("GSR" + "GS" + "GSR" + "GSGS")
    assert [r.query for r in requests if isinstance(r, Retrieve)] == [
        "Eiffel Tower", "president United States Eiffel Tower finished"]
    assert outcome.steps == 1 and outcome.answer == "Cleveland"


def test_blank_samples_count_as_uncertain():
    blank_samples = sample_set([generation(""), generation("")])
    respond = Script(
        generations=[generation("So the answer is: Paris."), generation("So the answer is: Paris."),
                     generation("So the answer is: Lyon.")],
        sample_sets=[blank_samples, same(), spread()])
    outcome, _ = script(seakr(), question(Q), respond)
    assert respond.exhausted()
    assert math.isnan(outcome.trigger_score)
    # Uncertain, but the draft already answers, so SeaKR does not retrieve.
    assert outcome.retrieve_first is False and outcome.queries == ()
    assert outcome.answer == "Paris"


def test_calibrated_threshold_puts_the_need_rate_above_it():
    from bench.pipelines.seakr import calibrated_threshold

    scores = np.array([5.0, 6.0, 7.0, 8.0, np.nan])
    # need rate 0.4 of 5 questions = 2 above: the NaN and 8.0 → threshold 7.0.
    assert calibrated_threshold(scores, 0.4) == 7.0
    # 0.8 → 4 above: NaN, 8, 7, 6 → threshold 5.0 (5.0 itself does not retrieve).
    assert calibrated_threshold(scores, 0.8) == 5.0
    # everything retrieves: below the minimum; nothing: the maximum.
    assert calibrated_threshold(scores, 1.0) == 4.0
    assert calibrated_threshold(scores[:4], 0.0) == 8.0
    assert calibrated_threshold(np.array([np.nan]), 0.5) == math.inf


def test_prepare_calibrates_on_train_first_steps_and_never_answers():
    """The probe issues the first step's draft + samples and the Never answer per
    train question; the threshold follows the wrong-answer rate."""
    from bench.pipelines.seakr import _FirstStepProbe

    pipeline = SeaKR(context(), SeaKR.Settings().updated({"samples": 2}))
    probe = _FirstStepProbe(pipeline)
    scores = {"q1": same(), "q2": wide()}

    def respond_for(qid, never):
        def respond(request):
            if isinstance(request, Sample):
                return scores[qid]
            if request.messages == context().template.closed(Q):
                return generation(never)
            return generation(STEP_1)
        return respond

    right, requests = script(probe, question(Q, ["Harrison"], "q1"),
                             respond_for("q1", "Benjamin Harrison"))
    assert [type(r).__name__ for r in requests] == ["Generate", "Sample", "Generate"]
    assert right.retrieve_first is False
    assert right.trigger_score == pytest.approx(SAME_SCORE, abs=1e-6)
    wrong, _ = script(probe, question(Q, ["Harrison"], "q2"),
                      respond_for("q2", "Grover Cleveland"))
    assert wrong.retrieve_first is True
    assert wrong.trigger_score == pytest.approx(WIDE_SCORE, abs=1e-6)


def test_run_without_calibration_or_a_threshold_fails_loudly():
    pipeline = SeaKR(context())
    with pytest.raises(RuntimeError, match="calibrated by prepare"):
        script(pipeline, question(Q), lambda r: sample_set([generation(STEP_1)] * 2)
               if isinstance(r, Sample) else generation(STEP_1))
