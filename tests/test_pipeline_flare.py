"""FLARE control flow with scripted look-aheads, token probabilities and retrievals."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.models.hf_backend import GreedyConfig
from bench.pipelines.base import Generate, Retrieve
from bench.pipelines.flare import Flare, look_ahead_sentences
from bench.pipelines.text import cot_messages
from tests.pipeline_harness import context, generation, passage, question, script

CONFIG = replace(GreedyConfig(), max_new_tokens=64)
Q = question("Who was president of France when the Eiffel Tower opened?", ["Sadi Carnot"])


def scripted(responses):
    """A responder that hands out ``responses`` in order, whatever the request."""
    queue = list(responses)

    def respond(request):
        return queue.pop(0)
    return respond


def probs(n: int, low: dict[int, float] | None = None) -> list[float]:
    """n token probabilities of 0.9, except the positions in ``low``."""
    values = [0.9] * n
    for index, value in (low or {}).items():
        values[index] = value
    return values


def test_confident_look_ahead_is_kept_without_retrieval():
    text = "The capital of Japan is Tokyo. So the answer is: Tokyo."
    # 11 words + the newline stop token.
    look_ahead = generation(text, probs=probs(12, {0: 0.8, 3: 0.75}))
    q = question("What is the capital of Japan?", ["Tokyo"])
    outcome, requests = script(Flare(context()), q, scripted([look_ahead]))
    assert requests == [Generate(cot_messages("What is the capital of Japan?"), CONFIG)]
    assert outcome.answer == "Tokyo"
    assert outcome.queries == ()
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.25)  # 1 - 0.75 in the first sentence
    assert outcome.steps == 2


def test_low_probability_sentence_is_masked_retrieved_and_regenerated():
    first = ("The Eiffel Tower opened in 1889. Sadi Carnot was president of France in 1889. "
             "So the answer is: Jules Grevy.")
    # Tokens 0-5 sentence 1, 6-13 sentence 2 (" Sadi" 0.3, " Carnot" 0.2), 14-19, stop.
    look_ahead = generation(first, probs=probs(21, {6: 0.3, 7: 0.2}))
    regenerated_text = ("Marie Francois Sadi Carnot was president of France in 1889. "
                        "He was born in Limoges. So the answer is: Sadi Carnot.")
    # Sentence 1 (tokens 0-9) is the regenerated one: exempt although " Francois" is 0.1.
    # Sentence 2 (10-14) has " Limoges." at 0.1: a second retrieval.
    regenerated = generation(regenerated_text, probs=probs(22, {1: 0.1, 14: 0.1}))
    final = generation("He was born in Paris. So the answer is: Sadi Carnot.",
                       probs=probs(12, {0: 0.05}))
    carnot = [passage("p1", "Sadi Carnot was President of France from 1887.")]
    limoges = [passage("p2", "Sadi Carnot was born in Limoges.")]
    outcome, requests = script(Flare(context()), Q, scripted(
        [look_ahead, carnot, regenerated, limoges, final]))
    q = Q.question
    kept_1 = "The Eiffel Tower opened in 1889."
    kept_2 = kept_1 + " Marie Francois Sadi Carnot was president of France in 1889."
    assert requests == [
        Generate(cot_messages(q), CONFIG),
        Retrieve("was president of France in 1889.", 3),
        Generate(cot_messages(q, carnot, kept_1), CONFIG),
        Retrieve("He was born in", 3),
        # The new passages replace the previous ones.
        Generate(cot_messages(q, limoges, kept_2), CONFIG),
    ]
    assert outcome.queries == ("was president of France in 1889.", "He was born in")
    assert outcome.answer == "Sadi Carnot"
    # The first look-ahead sentence was confident: the first decision is "skip".
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.1)
    assert outcome.steps == 4


def test_answer_sentence_without_content_words_queries_the_question():
    look_ahead = generation("So the answer is: Tokyo.", probs=[0.9, 0.9, 0.9, 0.9, 0.2, 0.9])
    regenerated = generation("So the answer is: Kyoto.", probs=[0.9, 0.9, 0.9, 0.9, 0.1, 0.9])
    docs = [passage("p1", "Kyoto was the capital.")]
    q = question("What was the capital of Japan in 1000?", ["Kyoto"])
    outcome, requests = script(Flare(context()), q, scripted([look_ahead, docs, regenerated]))
    assert requests == [
        Generate(cot_messages(q.question), CONFIG),
        Retrieve(q.question, 3),  # "So the answer is:" has no content word
        Generate(cot_messages(q.question, docs), CONFIG),
    ]
    assert outcome.answer == "Kyoto"
    assert outcome.retrieve_first is True
    assert outcome.trigger_score == pytest.approx(0.8)
    assert outcome.steps == 1


def test_sentence_limit_stops_before_the_answer():
    one = generation("The Eiffel Tower opened in 1889.")
    two = generation("Sadi Carnot was president then. So the answer is: Sadi Carnot.")
    flare = Flare(context(), Flare.Settings(max_sentences=2))
    outcome, requests = script(flare, Q, scripted([one, two]))
    assert requests == [
        Generate(cot_messages(Q.question), CONFIG),
        Generate(cot_messages(Q.question, (), "The Eiffel Tower opened in 1889."), CONFIG),
    ]
    assert outcome.answer == "Sadi Carnot was president then"  # no "answer is": last sentence
    assert outcome.steps == 2
    assert outcome.queries == ()


def test_token_budget_stops_after_the_sentence_that_reaches_it():
    text = "The Eiffel Tower opened in 1889. Sadi Carnot was president then."
    flare = Flare(context(), Flare.Settings(reasoning_token_budget=6))
    outcome, requests = script(flare, Q, scripted([generation(text)]))
    assert len(requests) == 1
    assert outcome.answer == "The Eiffel Tower opened in 1889"
    assert outcome.steps == 1


def test_empty_first_look_ahead_is_a_skip_with_zero_score():
    outcome, requests = script(Flare(context()), Q, scripted([generation("")]))
    assert len(requests) == 1
    assert (outcome.answer, outcome.retrieve_first, outcome.trigger_score) == ("", False, 0.0)


def test_sentences_own_the_tokens_covering_them_and_mask_subwords():
    tokens = ["The", " Eiff", "el", " Tower", " opened", ".", " It", " is", " tall", ".", "\n"]
    look_ahead = generation("The Eiffel Tower opened. It is tall.", tokens=tokens,
                            probs=[0.9, 0.9, 0.3, 0.9, 0.9, 0.9, 0.9, 0.5, 0.9, 0.9, 0.9])
    first, second = look_ahead_sentences(look_ahead)
    assert first.text == "The Eiffel Tower opened."
    np.testing.assert_allclose(first.probabilities, [0.9, 0.9, 0.3, 0.9, 0.9, 0.9], rtol=1e-6)
    assert first.pieces == ("The", " Eiff", "el", " Tower", " opened", ".")
    assert first.masked(0.4) == "The Eiff Tower opened."
    assert second.pieces == ("It", " is", " tall", ".")
    assert second.masked(0.6) == "It tall."
