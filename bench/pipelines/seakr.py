"""SeaKR: self-aware knowledge retrieval (Yao et al. 2024, arXiv 2406.19215).

Each reasoning step is drafted greedily while k samples of the same step are
drawn; their EigenScore (the Gram log-determinant of the samples' hidden
states, :func:`estimators.eigenscore.gram_log_det`) is the model's
self-aware uncertainty. A confident draft is kept. An uncertain one is thrown
away: SeaKR searches with the draft's confident words, re-generates the step
once per new snippet (kept passages + that snippet) and keeps the snippet
whose step is least uncertain. Finally it answers twice, once reading its own
steps and once reading the kept passages, and returns the less uncertain one.

Settings (study value -> arbench default)
-----------------------------------------
* ``samples``: 20 -> 10 (one ``Sample`` request; 20 is slow on a 2-core CPU).
* ``eigen_threshold``: -6.0 -> None = calibrated on train. The score is not
  comparable across models, layers, prompts and k (SmolLM2's first reasoning
  steps score about 6 to 7, its short answers about 7.2 to 8), so
  :meth:`SeaKR.prepare` sets the threshold to the quantile of the train
  questions' first-step scores above which the share of train questions equals
  train's need-retrieval rate (the Never answer is wrong). A number fixes it.
* ``prob_threshold``: 0.1 -> 0.1 (a word is "sure" if every token has p >= 0.9).
* ``retrieve_k``: 3 -> 3 (``topk=3`` in SeaKR's ``_retrieve``; STUDY.md §7 lists
  5, which is ``max_docs``, the cap on kept passages).
* ``max_docs``: 5 -> 5. ``max_reasoning_steps``: 7 -> 7.
* Fixed: ``eigen_alpha`` 1e-3 (``estimators.eigenscore.ALPHA``); layer 15 of 32
  -> the middle recorded layer (``num_layers // 2``); n_shot 10 -> the three
  demonstrations of :mod:`bench.pipelines.text`.

Deviations from SeaKR's code (``SEAKR/reasoner.py``)
----------------------------------------------------
1. Samples: T 1.0 and top-k 50 as in SeaKR, but no top-p 0.9, up to 32 new
   tokens (not 100) and they stop at a newline, not at ". ".
2. Hidden state: ``Generation.hidden_mean`` (mean over the generated steps) of
   the middle recorded layer instead of the state at the EOS step, because our
   samples do not end at a sentence boundary; blank samples are dropped as in
   the ``seakr_eigen_score`` estimator. Fewer than two non-blank samples give
   NaN, which counts as uncertain and ranks a snippet last.
3. Steps: the first sentence of a greedy generation that stops at a newline.
4. Query: words are split at leading spaces of tokens (not spaCy), and the
   POS filter (NOUN, ADJ, VERB, PROPN, NUM, ADV) is replaced by the stopword
   filter :func:`~bench.pipelines.text.is_real_word`.
5. Final reads: answers are found with ``extract_answer`` ("answer is" only);
   an answer-less read is forced with the continuation "So the answer is:",
   and each read is scored by the samples of its unforced prompt.
6. Chat template and arbench's CoT prompt instead of SeaKR's raw prompt.

Kept from SeaKR: a draft that already states the answer ends the loop even
when uncertain; a repeated query, or a search that finds no passage not yet
kept, ends the loop and drops the uncertain draft.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from bench.data.schema import Question
from bench.metrics.qa import in_accuracy
from bench.models.hf_backend import SamplingConfig
from bench.models.outputs import Generation, SampleSet
from bench.pipelines.base import (
    Generate,
    Outcome,
    Pipeline,
    PipelineSettings,
    QuestionRun,
    Retrieve,
    Sample,
    register_pipeline,
)
from bench.pipelines.text import (
    cot_messages,
    extract_answer,
    first_sentence,
    has_answer,
    is_real_word,
    tokens_covering,
)
from bench.prompts import Messages
from estimators.eigenscore import gram_log_det
from retrievers.base import Passage

_PUNCTUATION = ".,;:!?\"'()[]"
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9]")
FORCED_ANSWER = "So the answer is:"


def eigen_score(sample_set: SampleSet) -> float:
    """SeaKR's uncertainty of one sample set: (1/k) log det(Z J_d Z^T + alpha I).

    Z stacks the ``hidden_mean`` rows of the middle recorded layer (the smallest
    recorded index > 0) of the non-blank samples. NaN with fewer than two.
    """
    kept = [s for s in sample_set.samples if s.text.strip()]
    if len(kept) < 2:
        return math.nan
    middle = min(int(layer) for layer in kept[0].layers if layer > 0)
    z = np.stack([np.asarray(s.hidden_mean[s.layer_index(middle)], np.float64) for s in kept])
    return gram_log_det(z)


def word_confidences(draft: Generation, n_chars: int) -> list[tuple[str, float]]:
    """Words of the draft's first ``n_chars`` characters with their lowest token
    probability; a token with a leading space starts a word, and tokens without
    a letter or digit do not count (SeaKR strips them)."""
    n_tokens = tokens_covering(draft.token_texts, n_chars)
    probabilities = np.exp(np.asarray(draft.token_logprobs[:n_tokens], np.float64))
    words: list[tuple[str, list[float]]] = []
    for piece, probability in zip(draft.token_texts[:n_tokens], probabilities):
        if not words or piece[:1].isspace():
            words.append((piece.strip(), []))
        else:
            words[-1] = (words[-1][0] + piece, words[-1][1])
        if _ALPHANUMERIC.search(piece):
            words[-1][1].append(float(probability))
    return [(word, min(probs)) for word, probs in words if probs]


def content_words(text: str) -> list[str]:
    """Content words of ``text``, punctuation stripped (the question fallback query)."""
    return [w.strip(_PUNCTUATION) for w in text.split() if is_real_word(w)]


def steps_messages(question: str, steps: list[str], reasoning: str = "") -> Messages:
    """CoT prompt whose context is SeaKR's own reasoning steps instead of passages."""
    turns = list(cot_messages(question, reasoning=reasoning))
    if steps:
        last_user = max(i for i, (role, _) in enumerate(turns) if role == "user")
        turns[last_user] = ("user", f"{' '.join(steps)}\n\n{turns[last_user][1]}")
    return tuple(turns)


def is_unknown(answer: str | None) -> bool:
    return answer is None or "unknown" in answer.lower()


@register_pipeline
class SeaKR(Pipeline):
    """Self-aware retrieval, re-ranking and reasoning by sample EigenScore."""

    name = "seakr"
    study_name = "SeaKR"

    @dataclass(frozen=True)
    class Settings(PipelineSettings):
        samples: int = 10
        #: None: calibrated on train by :meth:`SeaKR.prepare`.
        eigen_threshold: float | None = None
        prob_threshold: float = 0.1
        retrieve_k: int = 3
        max_docs: int = 5
        max_reasoning_steps: int = 7

    # The subclass's own settings type, so its fields type-check on self.settings.
    settings: Settings

    def __init__(self, context, settings=None) -> None:
        super().__init__(context, settings)
        self.threshold = self.settings.eigen_threshold

    def prepare(self, train: Sequence[Question], services) -> dict | None:
        """Calibrate the threshold on train unless the settings fix it.

        The first step of every train question is drafted and sampled (the same
        requests :meth:`run` starts with, so test questions reuse nothing but
        train runs share the cache) and the run's graded Never answer is read;
        the threshold is the first-step score quantile at 1 - need rate.
        """
        if self.settings.eigen_threshold is not None:
            self.threshold = self.settings.eigen_threshold
            return None
        from bench.pipelines.driver import drive

        traces = drive(_FirstStepProbe(self), train, services, "train")
        scores = np.array([t.outcome.trigger_score for t in traces], dtype=np.float64)
        need = np.array([t.outcome.retrieve_first for t in traces], dtype=bool)
        self.threshold = calibrated_threshold(scores, float(need.mean()))
        return {"eigen_threshold": self.threshold, "train_need_rate": float(need.mean()),
                "train_questions": len(train),
                "train_first_step_scores": [None if math.isnan(x) else x for x in scores]}

    @property
    def sampling(self) -> SamplingConfig:
        return replace(SamplingConfig(), n=self.settings.samples)

    def is_uncertain(self, step: str, score: float) -> bool:
        """SeaKR's DIRECT_FAILED: an empty step or EigenScore above the threshold."""
        if self.threshold is None:
            raise RuntimeError("SeaKR's threshold is calibrated by prepare(train) first; "
                               "or set eigen_threshold")
        return not step or not score <= self.threshold

    def draft_and_samples(self, messages: Messages) -> list:
        return [Generate(messages, self.context.greedy), Sample(messages, self.sampling)]

    def search_query(self, draft: Generation, step: str, question: str, last_step: str) -> str:
        """Sure content words of the failed draft; the question's if there are none."""
        sure = []
        for word, probability in word_confidences(draft, len(step)) if step else ():
            bare = word.strip(_PUNCTUATION)
            confident = 1.0 - probability <= self.settings.prob_threshold
            if (bare in question or bare in last_step or confident) and is_real_word(bare):
                sure.append(bare)
        return " ".join(sure or content_words(question))

    def run(self, question: Question) -> QuestionRun:
        settings, text = self.settings, question.question
        steps: list[str] = []
        passages: list[Passage] = []
        queries: list[str] = []
        retrieve_first: bool | None = None
        trigger_score: float | None = None
        while True:
            reasoning = " ".join(s for s in steps if s)
            draft, samples = yield self.draft_and_samples(
                cot_messages(text, passages, reasoning))
            step, score = first_sentence(draft.text), eigen_score(samples)
            uncertain = self.is_uncertain(step, score)
            if retrieve_first is None:
                retrieve_first, trigger_score = uncertain and not has_answer(step), score
            if uncertain and not has_answer(step):
                query = self.search_query(draft, step, text, steps[-1] if steps else "")
                if query in queries:
                    break
                queries.append(query)
                hits = yield Retrieve(query, settings.retrieve_k)
                kept_ids = {p.id for p in passages}
                candidates = [p for p in hits if p.id not in kept_ids]
                if not candidates:
                    break
                step, chosen = yield from self.rerank(text, passages, reasoning, candidates)
                passages.append(chosen)
            steps.append(step)
            if (has_answer(step) or len(steps) >= settings.max_reasoning_steps
                    or len(passages) >= settings.max_docs):
                break
        answer = yield from self.integrate(text, steps, passages)
        return Outcome(answer=answer, retrieve_first=retrieve_first,
                       trigger_score=trigger_score, queries=tuple(queries), steps=len(steps))

    def rerank(self, question: str, passages: list[Passage], reasoning: str,
               candidates: list[Passage]):
        """Generate the step once per candidate; keep the least uncertain (SeaKR ``rag``).

        Returns
        -------
        (str, Passage)
            The chosen candidate's step and the candidate. A candidate whose
            step is empty or whose score is NaN ranks last; ties keep
            retrieval order.
        """
        requests = []
        for candidate in candidates:
            requests += self.draft_and_samples(
                cot_messages(question, [*passages, candidate], reasoning))
        results = yield requests
        ranked = []
        for index, candidate in enumerate(candidates):
            draft, samples = results[2 * index], results[2 * index + 1]
            step, score = first_sentence(draft.text), eigen_score(samples)
            ranked.append((score if step and not math.isnan(score) else math.inf, index,
                           step, candidate))
        _, _, step, chosen = min(ranked, key=lambda item: (item[0], item[1]))
        return step, chosen

    def integrate(self, question: str, steps: list[str], passages: list[Passage]):
        """Answer from the steps and from the passages; keep the less uncertain one.

        The last step's answer sentence is dropped before the steps are read
        (SeaKR ``filter_last_step``); an "unknown" or missing answer loses.
        """
        read_steps = steps[:-1] if steps and has_answer(steps[-1]) else steps
        read_steps = [s for s in read_steps if s]

        def reads(reasoning: str = "") -> tuple[Messages, Messages]:
            return (steps_messages(question, read_steps, reasoning),
                    cot_messages(question, passages, reasoning))

        results = yield [r for messages in reads() for r in self.draft_and_samples(messages)]
        answers = [extract_answer(results[0].text) if has_answer(results[0].text) else None,
                   extract_answer(results[2].text) if has_answer(results[2].text) else None]
        scores = [eigen_score(results[1]), eigen_score(results[3])]
        unanswered = [i for i, answer in enumerate(answers) if answer is None]
        if unanswered:
            forced = yield [Generate(reads(FORCED_ANSWER)[i], self.context.greedy)
                            for i in unanswered]
            for i, generation in zip(unanswered, forced):
                answers[i] = extract_answer(f"{FORCED_ANSWER} {generation.text}")
        step_answer, read_answer = answers
        if is_unknown(step_answer):
            return read_answer
        if is_unknown(read_answer) or scores[0] < scores[1]:
            return step_answer
        return read_answer


def calibrated_threshold(scores: np.ndarray, need_rate: float) -> float:
    """The threshold above which a ``need_rate`` share of ``scores`` lies.

    NaN scores count as above every threshold (they retrieve). With every
    score NaN, or a need rate of 0, nothing finite is needed: +inf / the
    maximum keep the rule "retrieve iff score > threshold".
    """
    finite = np.sort(scores[np.isfinite(scores)])
    if finite.size == 0:
        return math.inf
    wanted_above = need_rate * scores.size - (scores.size - finite.size)
    below = int(np.clip(round(finite.size - wanted_above), 0, finite.size))
    if below == 0:
        return float(finite[0]) - 1.0
    return float(finite[below - 1])


class _FirstStepProbe(Pipeline):
    """SeaKR's first step plus the graded Never answer, for calibrating on train."""

    name = "seakr_first_step"

    def __init__(self, seakr: SeaKR) -> None:
        super().__init__(seakr.context, seakr.settings)
        self.seakr = seakr

    def run(self, question: Question) -> QuestionRun:
        draft, samples, never = yield [
            *self.seakr.draft_and_samples(cot_messages(question.question)),
            Generate(self.context.template.closed(question.question), self.context.greedy)]
        wrong = in_accuracy(never.text, list(question.answers)) == 0
        return Outcome(answer=never.text, retrieve_first=wrong,
                       trigger_score=eigen_score(samples))
