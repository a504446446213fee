"""IRCoT control flow: scripted chain-of-thought steps and retriever results."""
from __future__ import annotations

import pytest

from bench.pipelines import PIPELINES, create_pipeline
from bench.pipelines.base import Generate, Retrieve
from bench.pipelines.ircot import (
    IRCoT,
    add_new_passages,
    is_reasoning_sentence,
    next_query,
)
from bench.pipelines.text import COT_SYSTEM, cot_messages
from tests.pipeline_harness import context, generation, passage, question, script

QUESTION = "Where was the director of Film X born?"


def passages(prefix: str, n: int = 6) -> list:
    return [passage(f"{prefix}{i}", f"text {prefix}{i}") for i in range(1, n + 1)]


def responder(retrievals: dict, steps: list[str], reader: str = "Paris"):
    """Retrieve → ``retrievals[query]``; CoT step i → ``steps[i]``; reader → ``reader``."""
    cot_calls = []

    def respond(request):
        if isinstance(request, Retrieve):
            return retrievals[request.query]
        assert isinstance(request, Generate)
        if request.messages[0] == ("system", COT_SYSTEM):
            cot_calls.append(request)
            return generation(steps[len(cot_calls) - 1])
        return generation(reader)

    return respond


def test_registered_with_study_settings():
    assert PIPELINES["ircot"] is IRCoT
    pipeline = create_pipeline("ircot", context(), {"max_steps": 3})
    assert pipeline.settings.to_dict() == {"step_top_k": 6, "max_passages": 15, "max_steps": 3}
    assert IRCoT.study_name == "IRCoT"


def test_retrieves_per_sentence_until_answer_then_reads_capped_passages():
    s1 = "Film X was directed by Jane Doe."
    s2 = "Jane Doe was born in Paris."
    a, b, c = passages("a"), passages("b"), passages("c")
    retrievals = {QUESTION: a, s1: [a[4], a[5], *b[:4]], s2: c}
    steps = [f"{s1} She was born in Paris.", f"{s2} So the answer is: Paris.",
             "So the answer is: Paris."]
    ctx = context()
    outcome, log = script(IRCoT(ctx), question(QUESTION), responder(retrievals, steps))

    after_1 = a                     # 6
    after_2 = a + b[:4]             # a5, a6 are duplicates: 10
    after_3 = a + b[:4] + c[:5]     # capped at 15: c6 is skipped
    assert log == [
        Retrieve(QUESTION, 6),
        Generate(cot_messages(QUESTION, after_1, ""), ctx.greedy),
        Retrieve(s1, 6),
        Generate(cot_messages(QUESTION, after_2, s1), ctx.greedy),
        Retrieve(s2, 6),
        Generate(cot_messages(QUESTION, after_3, f"{s1} {s2}"), ctx.greedy),
        Generate(ctx.template.augmented(QUESTION, after_3), ctx.greedy),
    ]
    assert outcome.answer == "Paris"
    assert outcome.queries == (QUESTION, s1, s2)
    assert outcome.steps == 3
    assert outcome.retrieve_first is None and outcome.trigger_score is None


def test_answer_in_first_step_retrieves_once():
    a = passages("a")
    ctx = context()
    outcome, log = script(IRCoT(ctx), question(QUESTION),
                          responder({QUESTION: a}, ["So the answer is: Lyon. Extra."], "Lyon"))
    assert log == [Retrieve(QUESTION, 6),
                   Generate(cot_messages(QUESTION, a, ""), ctx.greedy),
                   Generate(ctx.template.augmented(QUESTION, a), ctx.greedy)]
    assert (outcome.answer, outcome.queries, outcome.steps) == ("Lyon", (QUESTION,), 1)


def test_step_limit_stops_without_retrieving_after_last_sentence():
    sentences = [f"Fact number {i} holds." for i in range(1, 7)]
    retrievals = {QUESTION: passages("a", 2), **{s: [passage(f"p{i}", s)]
                                                   for i, s in enumerate(sentences)}}
    ctx = context()
    outcome, log = script(IRCoT(ctx), question(QUESTION), responder(retrievals, sentences))
    # Default max_steps 5: five CoT calls, retrievals after sentences 1-4 only.
    assert [type(r).__name__ for r in log] == (["Retrieve", "Generate"] * 5 + ["Generate"])
    assert outcome.queries == (QUESTION, *sentences[:4])
    assert outcome.steps == 5
    reader = log[-1]
    assert reader == Generate(ctx.template.augmented(
        QUESTION, passages("a", 2) + [passage(f"p{i}", sentences[i]) for i in range(4)]),
        ctx.greedy)

    short = IRCoT(ctx, IRCoT.Settings(max_steps=2))
    outcome, log = script(short, question(QUESTION), responder(retrievals, sentences))
    assert outcome.queries == (QUESTION, sentences[0]) and outcome.steps == 2
    assert len(log) == 5


def test_reasoning_sentences_are_not_queries():
    steps = ["So it is a film.", "Jane Doe made it.", "Thus she was born in 1950.",
             "So the answer is: 1950."]
    retrievals = {QUESTION: passages("a", 1), "Jane Doe made it.": passages("b", 1)}
    outcome, _ = script(IRCoT(context()), question(QUESTION), responder(retrievals, steps))
    # After "So ..." only the question is left; after "Thus ..." the last fact is reused.
    assert outcome.queries == (QUESTION, QUESTION, "Jane Doe made it.", "Jane Doe made it.")
    assert outcome.steps == 4


def test_empty_step_ends_chain():
    ctx = context()
    outcome, log = script(IRCoT(ctx), question(QUESTION),
                          responder({QUESTION: passages("a", 1)}, [""], "?"))
    assert len(log) == 3 and log[-1] == Generate(
        ctx.template.augmented(QUESTION, passages("a", 1)), ctx.greedy)
    assert outcome.queries == (QUESTION,) and outcome.steps == 1


def test_helpers():
    a = passages("a", 3)
    assert add_new_passages(a[:2], [a[1], a[2], a[0]], 15) == a
    assert add_new_passages(a[:2], a, 2) == a[:2]
    assert add_new_passages([], passages("b", 4), 3) == passages("b", 3)
    assert is_reasoning_sentence("So, it is 5.")
    assert is_reasoning_sentence("Therefore Paris.")
    assert is_reasoning_sentence("He lived 1950 - 1900 = 50 years.")
    assert not is_reasoning_sentence("Sophia Loren was born in Rome.")
    assert next_query("q?", ["A is B.", "So B."]) == "A is B."
    assert next_query("q?", ["So B."]) == "q?"


@pytest.mark.parametrize("text, first", [("One. Two.", "One."), ("No end", "No end")])
def test_only_first_sentence_is_kept(text, first):
    retrievals = {QUESTION: passages("a", 1), first: passages("b", 1)}
    outcome, log = script(IRCoT(context(), IRCoT.Settings(max_steps=2)), question(QUESTION),
                          responder(retrievals, [text, "So the answer is: x."]))
    assert outcome.queries == (QUESTION, first)
    assert log[3].messages[-1] == ("continuation", f"{first} ")
