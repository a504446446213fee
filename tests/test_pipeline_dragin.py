"""DRAGIN control flow with scripted continuations, entropies, attention maps and retrievals."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.models.hf_backend import GreedyConfig
from bench.pipelines.base import Attend, Attention, Generate, Retrieve
from bench.pipelines.dragin import Dragin, attended_words, rind_words
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


def words_of(text: str) -> tuple[str, ...]:
    """The harness's word tokens of ``text`` (no stop token)."""
    words = text.split(" ")
    return tuple([words[0]] + [" " + w for w in words[1:]])


def received(tokens, amounts) -> Attention:
    """A causal map in which every later position pays token i ``amounts[i]``,
    so the most attention token i receives is exactly ``amounts[i]``."""
    n = len(tokens)
    return Attention(tuple(tokens), np.tril(np.ones((n, n))) * np.asarray(amounts)[None, :])


def last_row(tokens, row) -> Attention:
    """A map whose last row is ``row`` (earlier rows attend to themselves)."""
    weights = np.eye(len(tokens))
    weights[-1] = row
    return Attention(tuple(tokens), weights)


CONTINUATION = ("The Eiffel Tower opened in 1889. Sadi Carnot was president. "
                "So the answer is: Sadi Carnot.")
# Words 0-5 | 6-9 | 10-15, then the stop token (entropy 0).
ENTROPIES = [0.1] * 6 + [0.7, 1.0, 0.0, 3.0] + [0.2] * 6 + [0.0]
# Sentence 2 gets attention 2, 1, 1, 0: RIND = 4 * a / 4 * H = Sadi 1.4, Carnot 1.0,
# "was" 0 (function word), "president." 0 (no attention); elsewhere the attention is
# uniform within the sentence, so RIND = H (normalised per sentence, not per text).
AMOUNTS = [1.0] * 6 + [2.0, 1.0, 1.0, 0.0] + [0.5] * 6


def test_rind_is_entropy_times_normalised_attention_within_the_sentence():
    words = rind_words(generation(CONTINUATION, entropies=ENTROPIES),
                       received(words_of(CONTINUATION), AMOUNTS))
    assert [w.sentence for w in words] == [0] * 6 + [1] * 4 + [2] * 6
    expected = [0, 0.1, 0.1, 0.1, 0, 0.1, 1.4, 1.0, 0, 0, 0, 0, 0, 0, 0.2, 0.2]
    assert [w.rind for w in words] == pytest.approx(expected)
    assert (words[6].start, words[6].end) == (33, 37)  # "Sadi"


def test_high_rind_truncates_queries_by_attention_and_regenerates():
    cut_reasoning = "The Eiffel Tower opened in 1889."
    focus_text = f"{Q.question} {cut_reasoning} Sadi"
    focus_tokens = words_of(focus_text)
    assert len(focus_tokens) == 17
    # Who was president of France when the Eiffel Tower opened? | The Eiffel Tower
    # opened in 1889. | Sadi (the trigger, excluded although it attends to itself most).
    row = [0.0, 0.0, 0.05, 0.0, 0.2, 0.0, 0.0, 0.1, 0.02, 0.01,
           0.0, 0.15, 0.03, 0.04, 0.0, 0.3, 0.5]
    docs = [passage("p1", "Sadi Carnot was President of France from 1887 to 1894.")]
    regenerated = generation("Marie Francois Sadi Carnot was president of France in 1889. "
                             "So the answer is: Sadi Carnot.")
    answer = "So the answer is: Sadi Carnot."
    responses = [generation(CONTINUATION, entropies=ENTROPIES),
                 received(words_of(CONTINUATION), AMOUNTS),
                 last_row(focus_tokens, row), docs, regenerated,
                 generation(answer, entropies=[0.1] * 7),
                 received(words_of(answer), [1.0] * 6)]
    dragin = Dragin(context(), Dragin.Settings(query_terms=3))
    outcome, requests = script(dragin, Q, scripted(responses))
    reasoning = cut_reasoning + " Marie Francois Sadi Carnot was president of France in 1889."
    assert requests == [
        Generate(cot_messages(Q.question), CONFIG),
        Attend(CONTINUATION),
        Attend(focus_text),
        Retrieve("France Eiffel 1889", 3),  # top 3 by attention (.3, .2, .15), in text order
        Generate(cot_messages(Q.question, docs, cut_reasoning), CONFIG),
        Generate(cot_messages(Q.question, (), reasoning), CONFIG),
        Attend(answer),
    ]
    assert outcome.queries == ("France Eiffel 1889",)
    assert outcome.answer == "Sadi Carnot"
    assert outcome.retrieve_first is True
    assert outcome.trigger_score == pytest.approx(1.4)
    assert outcome.steps == 2


def test_query_keeps_every_content_word_before_the_trigger_up_to_query_terms():
    tokens = words_of("Who was president of France? The Eiffel Tower opened. Sadi")
    row = [0.0, 0.0, 0.05, 0.0, 0.2, 0.0, 0.1, 0.02, 0.01, 0.5]
    cutoff = len("Who was president of France? The Eiffel Tower opened. ")
    attention = last_row(tokens, row)
    assert attended_words(attention, cutoff, 25) == "president France Eiffel Tower opened"
    assert attended_words(attention, cutoff, 2) == "France Eiffel"


def test_trigger_in_the_first_sentence_regenerates_from_scratch():
    text = "Jules Grevy was president. So the answer is: Jules Grevy."
    entropies = [2.0, 0.1, 0.1, 0.1] + [0.1] * 6 + [0.0]
    focus = f"{Q.question} Jules"
    docs = [passage("p1", "Sadi Carnot was President of France from 1887.")]
    responses = [generation(text, entropies=entropies),
                 received(words_of(text), [1.0] * 10),
                 last_row(words_of(focus), [0.1] * 10 + [0.5]),
                 docs, generation("So the answer is: Sadi Carnot.")]
    outcome, requests = script(Dragin(context()), Q, scripted(responses))
    assert requests[2:] == [
        Attend(focus),
        Retrieve("president France Eiffel Tower opened", 3),
        Generate(cot_messages(Q.question, docs), CONFIG),
    ]
    assert outcome.answer == "Sadi Carnot"
    assert (outcome.retrieve_first, outcome.trigger_score) == (True, pytest.approx(2.0))


def test_low_rind_keeps_the_continuation_and_function_words_never_trigger():
    text = "The capital of Japan is Tokyo. So the answer is: Tokyo."
    # "The" and "the" are very uncertain but are function words; "Japan" has 0.9.
    entropies = [5.0, 0.2, 0.1, 0.9, 0.1, 0.3, 0.1, 5.0, 0.1, 0.1, 0.4, 0.0]
    q = question("What is the capital of Japan?", ["Tokyo"])
    responses = [generation(text, entropies=entropies), received(words_of(text), [1.0] * 11)]
    outcome, requests = script(Dragin(context()), q, scripted(responses))
    assert requests == [Generate(cot_messages(q.question), CONFIG), Attend(text)]
    assert outcome.answer == "Tokyo"
    assert outcome.queries == ()
    assert outcome.retrieve_first is False
    assert outcome.trigger_score == pytest.approx(0.9)
    assert outcome.steps == 1


def test_step_limit_stops_a_chain_without_an_answer():
    one, two = "The Eiffel Tower opened in 1889.", "It is in Paris."
    responses = [generation(one), received(words_of(one), [1.0] * 6),
                 generation(two), received(words_of(two), [1.0] * 4)]
    dragin = Dragin(context(), Dragin.Settings(max_steps=2))
    outcome, requests = script(dragin, Q, scripted(responses))
    assert requests == [Generate(cot_messages(Q.question), CONFIG), Attend(one),
                        Generate(cot_messages(Q.question, (), one), CONFIG), Attend(two)]
    assert outcome.answer == "It is in Paris"
    assert (outcome.steps, outcome.queries, outcome.trigger_score) == (2, (), 0.0)


def test_token_budget_stops_after_the_continuation_that_reaches_it():
    one = "The Eiffel Tower opened in 1889."
    dragin = Dragin(context(), Dragin.Settings(reasoning_token_budget=6))
    outcome, requests = script(dragin, Q, scripted([generation(one),
                                                    received(words_of(one), [1.0] * 6)]))
    assert len(requests) == 2
    assert outcome.answer == "The Eiffel Tower opened in 1889"


def test_attention_is_aligned_by_characters_across_tokenisations():
    text = "Eiffel opened."
    gen = generation(text, tokens=["Eiffel", " opened.", "\n"], entropies=[1.0, 1.0, 0.0])
    # Attend splits "Eiffel" in two; the word receives the larger of its tokens' maxima.
    split = received(("Eiff", "el", " opened."), [1.0, 3.0, 1.0])
    assert [w.rind for w in rind_words(gen, split)] == pytest.approx([1.5, 0.5])
    # Past the first differing character no attention is trusted: "opened." gets none.
    differing = received(("Eiffel", " closed."), [1.0, 1.0])
    assert [w.rind for w in rind_words(gen, differing)] == pytest.approx([2.0, 0.0])
    # The same holds where the tokens spell something else than the decoded text.
    garbled = generation(text, tokens=["Eiffel", " opened!", "\n"], entropies=[1.0, 1.0, 0.0])
    same = received(("Eiffel", " opened!"), [1.0, 1.0])
    assert [w.rind for w in rind_words(garbled, same)] == pytest.approx([2.0, 0.0])
