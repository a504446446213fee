"""Rowen (Ding et al. 2024): retrieve only when answers to perturbed questions disagree.

The model answers the question closed-book, rewrites it 6 times, and answers the
rewrites twice: in English and in Chinese (Rowen-CL), or by itself and by a
second "verifier" model (Rowen-CM), or both (Rowen-Hybrid). If the paired answers
agree on average by less than ``consistency_threshold``, each rewrite retrieves
its top passage and the question is answered again with those passages.

Settings (study value → arbench value):

* ``n_perturbations``: 6 (``--k 6``) → 6.
* ``perturbation_temperature``: 1.0 → 1.0.
* ``perturbation_top_k``: none (vLLM default) → 50, the sampler's truncation.
* ``perturbation_max_new_tokens``: server default (no cap) → 48; one line each.
* ``consistency_threshold``: 0.5 → 0.5.
* ``passages_per_query``: 1 → 1.
* ``cm_consistency_alpha`` (Hybrid): 1.0 → 1.0.
* ``normalise_hybrid`` (Hybrid): no (raw sum vs 0.5) → yes, ``(CL + α·CM) / (1 + α)``.
* verifier: Qwen2.5-72B-Instruct-AWQ → the run's ``verifier`` role (qwen2.5-coder-0.5b).

Deviations from ``rowen/run_standart.py`` (the study's code) and the paper:

1. Perturbations: one request for 6 paraphrases at once, split by lines (the count
   varies) → one :class:`Sample` of 6 one-line paraphrases; list labels and quotes
   are stripped, empty and case-insensitively repeated ones dropped; if none is
   left, the original question stands in.
2. Initial answer: chain of thought, then a short answer → the run's graded
   closed-book answer, so a skipped retrieval reproduces the Never row exactly.
3. Answers to perturbations: CoT long answers; the study's code zips the original
   long answer (a string) with the rewrites, so it compares single characters
   (a defect not copied) → a greedy short answer per rewrite and side.
4. Cross-language pair: English answer vs Chinese answer, judged bilingually by
   the LLM → the Chinese answer is translated back into English by the model
   itself, since the run's judge (MiniLM) reads English only.
5. Consistency checker: the main LLM says True/False per pair; score = fraction
   True → the run's :class:`Judge`; score = mean similarity in [0, 1].
6. Hybrid: the study compares ``CL + α·CM`` (range [0, 1 + α]) with 0.5, so it
   retrieves only when both checks mostly fail → normalised by ``1 + α`` so the
   threshold means the same for all three variants (``normalise_hybrid=False``
   restores the raw sum).
7. Retrieval: Elasticsearch ``multi_match`` on title/body (hits titles only,
   STUDY §9.11) → the run's retriever; top-1 per rewrite, never the original
   question; passages deduplicated by id.
8. Repair: a prompt with the question, initial reasoning and answer, and
   ``query? title: text`` evidences → the run's augmented (Always) prompt with the
   question and the passages, so the retrieve branch is comparable with Always.
9. Models and budget: Llama-3.1-8B and Qwen2.5-72B with long outputs → the run's
   main and verifier models, greedy, one line of at most 48 tokens per call.
"""
from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np

from bench.data.schema import Question
from bench.models.hf_backend import SamplingConfig
from bench.pipelines.base import (
    MAIN,
    VERIFIER,
    Generate,
    Judge,
    Outcome,
    Pipeline,
    PipelineSettings,
    QuestionRun,
    Retrieve,
    Sample,
    register_pipeline,
)
from bench.prompts import Messages
from retrievers.base import Passage

PARAPHRASE_SYSTEM = ("You rewrite questions without changing their meaning. "
                     "Reply with the rewritten question only.")
PARAPHRASE_PROMPT = "Rewrite the question in different words: {question}"
ANSWER_SYSTEM = ("You answer questions with a short answer: a name, a place, a date or a few "
                 "words. Do not explain.")
ANSWER_PROMPT = "Question: {question}\nAnswer:"
ANSWER_SYSTEM_ZH = "你用简短的答案回答问题：一个名字、一个地点、一个日期或几个词。不要解释。"
ANSWER_PROMPT_ZH = "问题：{question}\n答案："
TRANSLATE_SYSTEM = "You are a translator. Reply with the translation only."
TO_CHINESE_PROMPT = "Translate the following question into Chinese:\n{text}"
TO_ENGLISH_PROMPT = "Translate the following text into English:\n{text}"

# List markers and labels a small model puts before a paraphrase ("1.", "- ", "Question:").
_LABEL = re.compile(r"^(?:\s*(?:\d+\s*[.):]|[-*•]|(?:rewritten |paraphrased )?question\s*:))+\s*",
                    re.IGNORECASE)
_QUOTES = "\"'“”‘’"


def _chat(system: str, user: str) -> Messages:
    return (("system", system), ("user", user))


def paraphrase_messages(question: str) -> Messages:
    return _chat(PARAPHRASE_SYSTEM, PARAPHRASE_PROMPT.format(question=question))


def answer_messages(question: str) -> Messages:
    return _chat(ANSWER_SYSTEM, ANSWER_PROMPT.format(question=question))


def chinese_answer_messages(question: str) -> Messages:
    return _chat(ANSWER_SYSTEM_ZH, ANSWER_PROMPT_ZH.format(question=question))


def to_chinese_messages(text: str) -> Messages:
    return _chat(TRANSLATE_SYSTEM, TO_CHINESE_PROMPT.format(text=text))


def to_english_messages(text: str) -> Messages:
    return _chat(TRANSLATE_SYSTEM, TO_ENGLISH_PROMPT.format(text=text))


def clean_perturbations(texts: Iterable[str], fallback: str) -> tuple[str, ...]:
    """Sampled paraphrases without labels, quotes, empties or repeats, in sample order.

    Parameters
    ----------
    texts : iterable of str
        The sample texts.
    fallback : str
        Used alone when nothing is left (the original question).
    """
    kept: list[str] = []
    seen: set[str] = set()
    for text in texts:
        cleaned = _LABEL.sub("", text).strip().strip(_QUOTES).strip()
        if cleaned and cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            kept.append(cleaned)
    return tuple(kept) or (fallback,)


def hybrid_consistency(cross_language: float, cross_model: float, alpha: float,
                       normalise: bool = True) -> float:
    """Rowen-Hybrid's score ``CL + α·CM``, divided by ``1 + α`` when ``normalise``.

    Normalised, it is a weighted mean in [0, 1] and is compared with the same
    threshold as CL and CM alone; raw, it is the study code's sum.
    """
    combined = cross_language + alpha * cross_model
    return combined / (1.0 + alpha) if normalise else combined


def unique_passages(hit_lists: Sequence[Sequence[Passage]]) -> list[Passage]:
    """Passages of every hit list in order, each id once."""
    seen: set[str] = set()
    unique: list[Passage] = []
    for hits in hit_lists:
        for passage in hits:
            if passage.id not in seen:
                seen.add(passage.id)
                unique.append(passage)
    return unique


@dataclass(frozen=True)
class ConsistencyScores:
    """Mean judge similarity of each check that ran (None for one that did not)."""

    cross_language: float | None = None
    cross_model: float | None = None


@dataclass(frozen=True)
class RowenSettings(PipelineSettings):
    """Rowen-CL and Rowen-CM settings (study values)."""

    n_perturbations: int = 6
    perturbation_temperature: float = 1.0
    perturbation_top_k: int = 50
    perturbation_max_new_tokens: int = 48
    consistency_threshold: float = 0.5
    passages_per_query: int = 1


@dataclass(frozen=True)
class RowenHybridSettings(RowenSettings):
    """Rowen-Hybrid adds the cross-model weight and the normalisation choice."""

    cm_consistency_alpha: float = 1.0
    normalise_hybrid: bool = True

    def __post_init__(self) -> None:
        if self.cm_consistency_alpha < 0:
            raise ValueError("cm_consistency_alpha must be >= 0")


class RowenBase(Pipeline):
    """Shared control flow; subclasses choose the checks and how to combine them."""

    Settings: ClassVar[type[PipelineSettings]] = RowenSettings
    # Narrowed so the Rowen fields type-check on self.settings.
    settings: RowenSettings
    cross_language: ClassVar[bool] = False
    cross_model: ClassVar[bool] = False

    @abstractmethod
    def combine(self, scores: ConsistencyScores) -> float:
        """The consistency compared with the threshold (higher = more consistent)."""

    def run(self, question: Question) -> QuestionRun:
        """Closed-book answer, consistency check, then retrieval and repair if it fails."""
        settings = self.settings
        greedy = self.context.greedy
        initial = yield Generate(self.context.template.closed(question.question), greedy)
        sampling = SamplingConfig(n=settings.n_perturbations,
                                  temperature=settings.perturbation_temperature,
                                  top_k=settings.perturbation_top_k,
                                  max_new_tokens=settings.perturbation_max_new_tokens)
        samples = yield Sample(paraphrase_messages(question.question), sampling)
        perturbations = clean_perturbations(samples.texts, question.question)
        scores = yield from self._check(perturbations)
        consistency = self.combine(scores)
        inconsistent = bool(consistency < settings.consistency_threshold)
        decision: dict[str, Any] = {"retrieve_first": inconsistent,
                                    "trigger_score": 1.0 - consistency}
        if not inconsistent:
            return Outcome(initial.text, steps=1, **decision)
        hit_lists = yield [Retrieve(p, settings.passages_per_query) for p in perturbations]
        passages = unique_passages(hit_lists)
        repaired = yield Generate(self.context.template.augmented(question.question, passages),
                                  greedy)
        return Outcome(repaired.text, queries=perturbations, steps=2, **decision)

    def _check(self, perturbations: tuple[str, ...]):
        """Yield the checks' requests, each stage batched over the perturbations."""
        greedy = self.context.greedy
        n = len(perturbations)
        first = [Generate(answer_messages(p), greedy) for p in perturbations]
        if self.cross_language:
            first += [Generate(to_chinese_messages(p), greedy) for p in perturbations]
        if self.cross_model:
            first += [Generate(answer_messages(p), greedy, VERIFIER) for p in perturbations]
        replies = [g.text for g in (yield first)]
        english, rest = replies[:n], replies[n:]
        judges: list[Judge] = []
        if self.cross_language:
            chinese_questions, rest = rest[:n], rest[n:]
            chinese = yield [Generate(chinese_answer_messages(c), greedy)
                             for c in chinese_questions]
            back = yield [Generate(to_english_messages(g.text), greedy) for g in chinese]
            judges.append(Judge(tuple(zip(english, [g.text for g in back]))))
        if self.cross_model:
            judges.append(Judge(tuple(zip(english, rest[:n]))))
        similarities = iter([float(np.mean(s)) for s in (yield judges)])
        return ConsistencyScores(
            cross_language=next(similarities) if self.cross_language else None,
            cross_model=next(similarities) if self.cross_model else None)


@register_pipeline
class RowenCL(RowenBase):
    """Rowen-CL: English answers vs Chinese answers to the same perturbed questions."""

    name = "rowen_cl"
    study_name = "Rowen-CL"
    models = (MAIN,)
    cross_language = True

    def combine(self, scores: ConsistencyScores) -> float:
        # cross_language = True, so _check filled this score.
        return cast(float, scores.cross_language)


@register_pipeline
class RowenCM(RowenBase):
    """Rowen-CM: the main model's answers vs the verifier model's answers."""

    name = "rowen_cm"
    study_name = "Rowen-CM"
    models = (MAIN, VERIFIER)
    cross_model = True

    def combine(self, scores: ConsistencyScores) -> float:
        # cross_model = True, so _check filled this score.
        return cast(float, scores.cross_model)


@register_pipeline
class RowenHybrid(RowenBase):
    """Rowen-Hybrid: both checks, combined as ``CL + α·CM`` (normalised)."""

    name = "rowen_hybrid"
    study_name = "Rowen-Hybrid"
    Settings = RowenHybridSettings
    settings: RowenHybridSettings
    models = (MAIN, VERIFIER)
    cross_language = True
    cross_model = True

    def combine(self, scores: ConsistencyScores) -> float:
        # Both checks are on for the hybrid, so both scores are set.
        return hybrid_consistency(cast(float, scores.cross_language),
                                  cast(float, scores.cross_model),
                                  self.settings.cm_consistency_alpha,
                                  self.settings.normalise_hybrid)
