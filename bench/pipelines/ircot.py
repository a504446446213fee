"""IRCoT: retrieval interleaved with chain-of-thought steps (Trivedi et al., ACL 2023).

The question retrieves the first passages; then each chain-of-thought sentence
the model writes becomes the next retrieval query, until a sentence says
"answer is" or the step limit is reached. A final reader call answers the
question from every passage collected.

Settings (study value → arbench value)
--------------------------------------
* ``step_top_k``: passages per retrieval, 6 (``bm25_retrieval_count``) → 6.
* ``max_passages``: cap on the cumulative passage set, 15 (``global_max_num_paras``;
  once full, later passages are skipped, so the earliest retrieved are kept) → 15,
  same rule.
* ``max_steps``: chain-of-thought sentences before stopping, 10
  (``max_num_sentences``, the ``StepByStepCOTGenParticipant`` default) → 5: every
  step re-reads up to 15 passages, a small model that has not concluded after 5
  sentences seldom does later, and the released outputs average 2.7 to 4.4 steps.

Control flow (the shipped ``ircot_qa_*`` config of Adaptive-RAG)
------------------------------------------------------------------
1. Retrieve ``step_top_k`` passages with the question.
2. Generate the next chain-of-thought continuation from the collected passages
   and the reasoning so far; keep only its first sentence (IRCoT keeps one spaCy
   sentence). An empty step ends the chain.
3. Stop if the sentence contains "answer is" or ``max_steps`` sentences exist.
4. Otherwise retrieve ``step_top_k`` passages with the last sentence that is not
   a "reasoning sentence" (one starting with thus/so/that is/therefore/hence or
   holding arithmetic, as ``remove_reasoning_sentences`` filters them; the
   question if none is left), add the new ones, and go to 2.
5. Reader call: the run's graded augmented prompt over the collected passages.

So RC = steps (the first retrieval plus one per non-final sentence, the study's
``stepNum``) and LMC = steps + 1.

Deviations from the original
----------------------------
* Prompt: arbench's chat-template CoT prompt with three hand-written
  demonstrations (``bench.pipelines.text``) instead of up to 15 dataset demos in
  a raw prompt; generation stops at a newline after 48 new tokens.
* First sentence by a regex splitter (``first_sentence``) instead of spaCy.
* Passages are deduplicated by passage id instead of a fuzzy title/text match
  (ratio >= 90), and none is dropped for being over 600 words.
* Queries are sent verbatim; the original strips wh-words (who, what, when,
  where, why, which, how, does, is) from every BM25 query.
* Reader: the run's short-answer augmented prompt (``template.augmented``,
  ``context.greedy``), so the answer is graded like the Always row; the original
  reader is a CoT prompt with 2-distractor demos whose "answer is" is extracted.
* ``max_steps`` 5 instead of 10 (see above).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bench.data.schema import Question
from bench.pipelines.base import (
    Generate,
    Outcome,
    Pipeline,
    PipelineSettings,
    QuestionRun,
    Retrieve,
    register_pipeline,
)
from bench.pipelines.text import cot_messages, first_sentence, has_answer
from retrievers.base import Passage

_REASONING_STARTERS = ("thus ", "thus,", "so ", "so,", "that is,", "therefore", "hence")
_ARITHMETIC = re.compile(r"(.*)(\d[\d,]*\.?\d+|\d+) ([+-]) (\d[\d,]*\.?\d+|\d+) = "
                         r"(\d[\d,]*\.?\d+|\d+)(.*)")


def is_reasoning_sentence(sentence: str) -> bool:
    """Whether ``sentence`` concludes or computes rather than states a fact.

    IRCoT never uses such a sentence as a retrieval query: "So ..." or "Thus ..."
    restates earlier facts, and "3 + 4 = 7" retrieves nothing useful.
    """
    lowered = sentence.lower()
    return lowered.startswith(_REASONING_STARTERS) or _ARITHMETIC.match(sentence) is not None


def next_query(question: str, sentences: Sequence[str]) -> str:
    """The retrieval query after ``sentences``: the last factual one, else the question."""
    factual = [s.strip() for s in sentences if not is_reasoning_sentence(s) and s.strip()]
    return factual[-1] if factual else question


def add_new_passages(collected: Sequence[Passage], retrieved: Sequence[Passage], limit: int
                     ) -> list[Passage]:
    """``collected`` followed by the unseen ``retrieved`` passages, at most ``limit`` in all.

    Once the set is full, later passages are skipped, so the earliest retrieved
    ones stay (IRCoT's ``global_max_num_paras`` rule).
    """
    kept = list(collected)
    seen = {p.id for p in kept}
    for passage in retrieved:
        if len(kept) >= limit:
            break
        if passage.id not in seen:
            kept.append(passage)
            seen.add(passage.id)
    return kept


@register_pipeline
class IRCoT(Pipeline):
    """Interleaving retrieval with chain-of-thought reasoning; always retrieves.

    ``run`` is reusable as a sub-routine: Adaptive-RAG's strategy C is
    ``yield from IRCoT(context, settings).run(question)``.
    """

    name = "ircot"
    study_name = "IRCoT"

    @dataclass(frozen=True)
    class Settings(PipelineSettings):
        """IRCoT settings (module docstring: study values and why they differ)."""

        step_top_k: int = 6
        max_passages: int = 15
        max_steps: int = 5

    # The subclass's own settings type, so its fields type-check on self.settings.
    settings: Settings

    def run(self, question: Question) -> QuestionRun:
        settings = self.settings
        text = question.question
        queries = [text]
        passages = add_new_passages([], (yield Retrieve(text, settings.step_top_k)),
                                    settings.max_passages)
        sentences: list[str] = []
        steps = 0
        while steps < settings.max_steps:
            step = yield Generate(cot_messages(text, passages, " ".join(sentences)),
                                  self.context.greedy)
            steps += 1
            sentence = first_sentence(step.text)
            if not sentence:
                break
            sentences.append(sentence)
            if has_answer(sentence) or steps >= settings.max_steps:
                break
            query = next_query(text, sentences)
            queries.append(query)
            passages = add_new_passages(passages, (yield Retrieve(query, settings.step_top_k)),
                                        settings.max_passages)
        reader = yield Generate(self.context.template.augmented(text, passages),
                                self.context.greedy)
        return Outcome(answer=reader.text, retrieve_first=None, trigger_score=None,
                       queries=tuple(queries), steps=steps)
