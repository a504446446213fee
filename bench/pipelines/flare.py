"""FLARE: forward-looking active retrieval (Jiang et al., EMNLP 2023, arXiv 2305.06983).

The model writes its chain of thought one sentence at a time. Each next
sentence is first generated as a look-ahead; if any of its tokens has
probability below θ, the sentence is used as a retrieval query with those
low-confidence tokens masked out, and the sentence is regenerated with the
retrieved passages in the prompt. Otherwise the look-ahead sentence is kept.

Settings (study value → arbench value)
--------------------------------------
* ``threshold`` θ: retrieve when min_t p_t < θ over the look-ahead sentence's
  tokens. Study: ``hallucination_threshold`` 10 to 10.1 compared with
  avg(1 − p) (``sentence_solver`` avg), which is at most 1 and so never fires
  (STUDY.md §9.12) → 0.4, i.e. retrieve iff 1 − min p > 0.6, the paper's
  any-token rule.
* ``top_k``: passages per retrieval, 3 → 3.
* ``max_new_tokens``: tokens per generation call, ``generate_max_length`` 64
  (HotpotQA 100) → 64.
* ``reasoning_token_budget``: stop once the kept reasoning has this many
  tokens, ``generate_max_length`` 64 (the study's loop bound) → 64.
* ``max_sentences``: sentence limit, none in the study (the token budget ends
  it) → 8, a safety bound the token budget normally reaches first.

Control flow
------------
1. Look-ahead: greedy CoT continuation of the reasoning so far, with the
   passages of the latest retrieval (none at first) in the prompt.
2. For each sentence of the look-ahead, in order: the tokens covering it
   (``tokens_covering``) give its probabilities. If one is below θ, retrieve
   ``top_k`` passages with the sentence minus those tokens (the question when
   no content word is left), drop the look-ahead from this sentence on, and
   regenerate (3). Otherwise keep the sentence and go on to the next one.
3. Regeneration: the CoT continuation with the new passages, which replace
   the previous ones. Its first sentence is kept unchecked (the regenerated
   sentence); its later sentences are the next look-ahead (2).
4. Stop when the reasoning says "answer is", ``max_sentences`` sentences or
   ``reasoning_token_budget`` tokens are kept, or a generation is empty.
5. Answer: ``extract_answer`` of the reasoning.

Under greedy decoding, looking ahead sentence by sentence and scanning one
continuation's sentences in turn give the same text, so the later sentences
of a continuation are used as the next look-aheads instead of regenerating
them; the study's code does the same.

Deviations from the original
----------------------------
* No retrieval before the first look-ahead: the study's ``rag_flare.py``
  retrieves with the question before generating anything (§9.12), which would
  make every question retrieve. The first decision is FLARE's confidence test.
* θ 0.4 on min p instead of the study's unreachable 10 on avg(1 − p).
* Every sentence is checked, the "answer is" sentence included (the study's
  code exempts it); when masking leaves no content word, the question is the
  query instead of an empty or stopword-only one.
* Masked query: low-probability tokens are removed (FLARE's masked query with
  β = θ) rather than replaced by ``[xxx]`` and then removed.
* Look-aheads see the latest retrieved passages, as in the study's code; the
  paper generates the look-ahead without documents.
* Prompt: arbench's chat-template CoT prompt (three hand-written demos) instead
  of 6 to 8 dataset demos; one line per call; regex sentences instead of spaCy.

Decision and score
------------------
``retrieve_first``: whether the first look-ahead sentence triggered retrieval;
``trigger_score``: 1 − min p over its tokens (0 for an empty look-ahead).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from bench.data.schema import Question
from bench.models.outputs import Generation
from bench.pipelines.base import (
    Generate,
    Outcome,
    Pipeline,
    PipelineSettings,
    QuestionRun,
    Retrieve,
    register_pipeline,
)
from bench.pipelines.text import (
    cot_messages,
    extract_answer,
    has_answer,
    is_real_word,
    split_sentences,
    tokens_covering,
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges [start, end) of the sentences of ``text`` (``split_sentences``)."""
    spans, cursor = [], 0
    for sentence in split_sentences(text):
        start = text.find(sentence, cursor)
        spans.append((start, start + len(sentence)))
        cursor = start + len(sentence)
    return spans


def token_char_spans(token_texts: Sequence[str]) -> list[tuple[int, int]]:
    """Character range [start, end) of each token in its stripped concatenation.

    Leading whitespace of the whole sequence is dropped, as in ``tokens_covering``,
    so the offsets index the stripped text the tokens spell.
    """
    spans, position, leading = [], 0, True
    for piece in token_texts:
        if leading:
            piece = piece.lstrip()
            leading = not piece
        spans.append((position, position + len(piece)))
        position += len(piece)
    return spans


def leading_tokens(token_texts: Sequence[str], n_chars: int) -> int:
    """Tokens needed to spell the first ``n_chars`` characters (0 for none)."""
    return tokens_covering(token_texts, n_chars) if n_chars > 0 else 0


def join_text(*parts: str) -> str:
    """Non-empty parts joined by single spaces."""
    return " ".join(part.strip() for part in parts if part.strip())


@dataclass(frozen=True)
class LookAheadSentence:
    """One sentence of a continuation with the tokens that spell it.

    Attributes
    ----------
    text : str
    probabilities : (m,) float array
        p_t of the m tokens covering the sentence.
    pieces : tuple of str
        The sentence cut at those tokens' boundaries (one piece per token).
    """

    text: str
    probabilities: np.ndarray
    pieces: tuple[str, ...]

    def masked(self, threshold: float) -> str:
        """The sentence without the pieces of tokens whose probability is below ``threshold``."""
        kept = "".join(piece for piece, p in zip(self.pieces, self.probabilities)
                       if p >= threshold)
        return " ".join(kept.split())


def look_ahead_sentences(generation: Generation) -> list[LookAheadSentence]:
    """The sentences of ``generation`` with the probabilities of the tokens covering each.

    Sentence k owns the tokens from the one after those covering sentence k − 1
    through those covering sentence k, so the first sentence gets exactly
    ``tokens_covering(token_texts, len(sentence))`` tokens.
    """
    tokens = generation.token_texts[:generation.n_text_tokens]
    probabilities = np.exp(generation.token_logprobs[:len(tokens)].astype(np.float64))
    char_spans = token_char_spans(tokens)
    text = generation.text
    sentences, first_token = [], 0
    for start, end in sentence_spans(text):
        last_token = max(leading_tokens(tokens, end), first_token)
        pieces = tuple(text[max(a, start):min(b, end)] for a, b in
                       char_spans[first_token:last_token])
        sentences.append(LookAheadSentence(text[start:end],
                                           probabilities[first_token:last_token], pieces))
        first_token = last_token
    return sentences


@register_pipeline
class Flare(Pipeline):
    """Forward-looking active retrieval: regenerate low-confidence look-ahead sentences."""

    name = "flare"
    study_name = "FLARE"

    @dataclass(frozen=True)
    class Settings(PipelineSettings):
        """FLARE settings (module docstring: study values and why they differ)."""

        threshold: float = 0.4
        top_k: int = 3
        max_new_tokens: int = 64
        reasoning_token_budget: int = 64
        max_sentences: int = 8

    # The subclass's own settings type, so its fields type-check on self.settings.
    settings: Settings

    def run(self, question: Question) -> QuestionRun:
        settings = self.settings
        config = replace(self.context.greedy, max_new_tokens=settings.max_new_tokens)
        text = question.question
        passages: tuple = ()
        reasoning, queries = "", []
        kept_sentences = kept_tokens = 0
        retrieve_first: bool | None = None
        trigger_score: float | None = None
        regenerated = False

        def finished() -> bool:
            return (has_answer(reasoning) or kept_sentences >= settings.max_sentences
                    or kept_tokens >= settings.reasoning_token_budget)

        while not finished():
            continuation = yield Generate(cot_messages(text, passages, reasoning), config)
            sentences = look_ahead_sentences(continuation)
            if not sentences:
                break
            retrieved = False
            for index, sentence in enumerate(sentences):
                if not (regenerated and index == 0):
                    low = sentence.probabilities < settings.threshold
                    if retrieve_first is None:
                        retrieve_first = bool(low.any())
                        trigger_score = 1.0 - float(sentence.probabilities.min(initial=1.0))
                    if low.any():
                        query = self._query(text, sentence)
                        queries.append(query)
                        passages = tuple((yield Retrieve(query, settings.top_k)))
                        retrieved = True
                        break
                reasoning = join_text(reasoning, sentence.text)
                kept_sentences += 1
                kept_tokens += len(sentence.probabilities)
                if finished():
                    break
            regenerated = retrieved
        if retrieve_first is None:  # the first look-ahead was empty: nothing signalled need
            retrieve_first, trigger_score = False, 0.0
        return Outcome(answer=extract_answer(reasoning), retrieve_first=retrieve_first,
                       trigger_score=trigger_score, queries=tuple(queries),
                       steps=kept_sentences)

    def _query(self, question: str, sentence: LookAheadSentence) -> str:
        """The masked sentence; the question when masking leaves no content word."""
        masked = sentence.masked(self.settings.threshold)
        return masked if any(is_real_word(w) for w in masked.split()) else question
